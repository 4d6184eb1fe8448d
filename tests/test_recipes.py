"""Every report run's config fingerprint is pinned: a change to a recipe cannot go unseen (committed results
are found by these fingerprints)."""

import pytest

from common import recipes

JPEG = "imagefolder:cifar10-jpeg-27d093021b"  # the JPEG copy of CIFAR-10, by its content


def report_runs() -> list:
    """The full-profile runs of every notebook, on the original files and (CIFAR-10) on the JPEG copy."""
    cifar10 = [recipes.level_e(name) for name in recipes.LEVEL_E_VARIANTS]
    cifar10 += [recipes.level_e("basic", seed=seed) for seed in (1, 2)]
    cifar10 += [recipes.level_a(model, "cifar10") for model in ("resnet18", "se_resnet18", "convnext")]
    cifar10 += [recipes.imagenet_stem()]
    cifar10 += list(recipes.cifar10_noise_runs().values())
    runs = cifar10 + [cfg.replace(source=JPEG, source_path="/anywhere") for cfg in cifar10]
    runs += [recipes.level_a(model, "cifar100") for model in recipes.LEVEL_A_MODELS]
    pretrain = recipes.supcon_pretrain()
    runs += [pretrain, recipes.supcon_pretrain(loss="supcon_with_self"),
             recipes.supcon_classifier(pretrain, "mlp"), recipes.supcon_classifier(pretrain, "linear")]
    runs += [recipes.noisy_labels("imagenette", rate=0.0), recipes.noisy_labels("imagenette", "symmetric", 0.3),
             recipes.noisy_labels("imagenette", "symmetric", 0.3, coteaching=True)]
    return runs


PINNED = {
    "e_basic-vgg_basic-cifar10-s0-full": "6992645353d4",
    "e_ls_cutout-vgg_basic-cifar10-s0-full": "b0145ec78d44",
    "e_warmup_cosine-vgg_basic-cifar10-s0-full": "2dee75be1cea",
    "e_step_decay-vgg_basic-cifar10-s0-full": "c74560bbc181",
    "e_cosine_restarts-vgg_basic-cifar10-s0-full": "8e3c67915d1c",
    "e_warmup_cosine_as_run-vgg_basic-cifar10-s0-full": "5d75201754c2",
    "e_step_decay_as_run-vgg_basic-cifar10-s0-full": "12f3f8a184a4",
    "e_cosine_restarts_as_run-vgg_basic-cifar10-s0-full": "ea55eeb6f0e7",
    "e_strided-vgg_basic-cifar10-s0-full": "8db20fee06a2",
    "e_gap-vgg_basic-cifar10-s0-full": "d35a8f965013",
    "e_combined-vgg_basic-cifar10-s0-full": "37ff616fc18a",
    "e_combined_as_run-vgg_basic-cifar10-s0-full": "e39567643b59",
    "e_no_bn-vgg_basic-cifar10-s0-full": "43fdb591bb4f",
    "e_cyclic_peak_1e3-vgg_basic-cifar10-s0-full": "bf6e144a2419",
    "e_no_dropout-vgg_basic-cifar10-s0-full": "600993f0eea3",
    "e_no_weight_decay-vgg_basic-cifar10-s0-full": "8cf9f0985e17",
    "e_no_augment-vgg_basic-cifar10-s0-full": "1bbd43e8608c",
    "e_basic-vgg_basic-cifar10-s1-full": "bdff9a1f4c01",
    "e_basic-vgg_basic-cifar10-s2-full": "c74ba4e978da",
    "a_resnet18-resnet18-cifar10-s42-full": "d3621e696f6c",
    "a_se_resnet18-se_resnet18-cifar10-s42-full": "44c05e617af5",
    "a_convnext-convnext-cifar10-s42-full": "087273d73f73",
    "noise_clean-resnet18-cifar10-s42-full": "4dffcb81c1e7",
    "noise_sym30_ce-resnet18-cifar10-s42-full": "aeba70f03c88",
    "noise_sym30_coteach-resnet18-cifar10-s42-full": "c7bb9234eb4e",
    "noise_pair45_ce-resnet18-cifar10-s42-full": "9cc4d98a606f",
    "noise_pair45_coteach-resnet18-cifar10-s42-full": "f1bad67765ba",
    "noise_symx50_ce-resnet18-cifar10-s42-full": "7b9b2b0e2d9c",
    "noise_symx50_coteach-resnet18-cifar10-s42-full": "ac231bf3a142",
    "e_basic-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "39d1ec0922ff",
    "e_ls_cutout-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "e94d40e3cc9e",
    "e_warmup_cosine-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "9fd43b39326d",
    "e_step_decay-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "10de7a870058",
    "e_cosine_restarts-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "4434114fd6b9",
    "e_warmup_cosine_as_run-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "f5c8c0f2721d",
    "e_step_decay_as_run-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "d6033adeb651",
    "e_cosine_restarts_as_run-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "20f37500b413",
    "e_strided-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "c9ba5b7b0549",
    "e_gap-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "9aa021e7d7e9",
    "e_combined-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "bb250b4dc8b3",
    "e_no_bn-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "e4d905e67a7e",
    "e_cyclic_peak_1e3-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "1b4d5457a6d9",
    "e_no_dropout-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "b2abeef93fbc",
    "e_no_weight_decay-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "c78fda6551fa",
    "e_no_augment-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "bd2bce087bda",
    "e_combined_as_run-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full": "93bd48fe7535",
    "e_basic-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s1-full": "0082af4b5d8b",
    "e_basic-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s2-full": "ccb433310aa3",
    "a_resnet18-resnet18-imagefolder-cifar10-jpeg-as-cifar10-s42-full": "7e075f30de5d",
    "a_se_resnet18-se_resnet18-imagefolder-cifar10-jpeg-as-cifar10-s42-full": "11891fb77893",
    "a_resnet18_imagenet_stem-resnet18-cifar10-s42-full": "9b1abc80fff0",
    "a_resnet18_imagenet_stem-resnet18-imagefolder-cifar10-jpeg-as-cifar10-s42-full": "f73fc3e50e21",
    "a_convnext-convnext-imagefolder-cifar10-jpeg-as-cifar10-s42-full": "0f6f89d2af52",
    "noise_clean-resnet18-imagefolder-cifar10-jpeg-as-cifar10-s42-full": "9609a944deab",
    "noise_sym30_ce-resnet18-imagefolder-cifar10-jpeg-as-cifar10-s42-full": "9a81005f531d",
    "noise_sym30_coteach-resnet18-imagefolder-cifar10-jpeg-as-cifar10-s42-full": "d6efe0e0f8b3",
    "noise_pair45_ce-resnet18-imagefolder-cifar10-jpeg-as-cifar10-s42-full": "be541362a973",
    "noise_pair45_coteach-resnet18-imagefolder-cifar10-jpeg-as-cifar10-s42-full": "d23e5683be44",
    "noise_symx50_ce-resnet18-imagefolder-cifar10-jpeg-as-cifar10-s42-full": "6c22b8aee135",
    "noise_symx50_coteach-resnet18-imagefolder-cifar10-jpeg-as-cifar10-s42-full": "ccc5a6956dfb",
    "a_resnet18-resnet18-cifar100-s42-full": "f5e6149c82b3",
    "a_se_resnet18-se_resnet18-cifar100-s42-full": "f7c0929f65c9",
    "a_convnext-convnext-cifar100-s42-full": "bc18368ec4ae",
    "a_vit-vit-cifar100-s42-full": "71237260098a",
    "a_supcon_pretrain-supcon_resnet18-cifar100-s42-full": "0dab94fd6789",
    "a_supcon_with_self_pretrain-supcon_resnet18-cifar100-s42-full": "34975eb45eaa",
    "a_supcon-supcon_mlp-cifar100-s42-full": "79313624d08c",
    "a_supcon_linear-supcon_linear-cifar100-s42-full": "03f801877c07",
    "noise_clean-resnet18_imagenet-imagenette-s42-full": "824c1325c006",
    "noise_sym30_ce-resnet18_imagenet-imagenette-s42-full": "8c5fe47909d1",
    "noise_sym30_coteach-resnet18_imagenet-imagenette-s42-full": "755025e7067c",
}


def test_every_report_run_keeps_its_pinned_fingerprint():
    found = {cfg.run_id: cfg.fingerprint() for cfg in report_runs()}
    assert len(found) == len(report_runs()), "two report runs share a run id"
    changed = {run: (PINNED.get(run), fp) for run, fp in found.items() if PINNED.get(run) != fp}
    assert not changed, ("a recipe changed (run: pinned -> now); if on purpose, its committed results no longer "
                         f"match: {changed}")
    assert set(PINNED) == set(found)


def test_where_an_image_folder_lies_is_not_part_of_the_run():
    here, there = (recipes.level_e("basic").replace(source=JPEG, source_path=path) for path in ("/a", "/b"))
    assert here.fingerprint() == there.fingerprint() and here.run_id == there.run_id
    assert "/a" not in str(here.to_dict())


def test_a_recipe_missing_a_field_is_refused():
    settings = {k: v for k, v in recipes.LEVEL_E.items() if k != "lr"}
    with pytest.raises(TypeError, match="lr"):
        recipes.RunConfig(experiment="e_x", **settings)


def test_zero_epochs_is_refused_not_read_as_the_recipes():
    with pytest.raises(ValueError, match="epochs=0"):
        recipes.level_e("basic", epochs=0)
