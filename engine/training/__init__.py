"""Training of the cloud-removal networks, and the data they learn from.

* samples and their manifests: :mod:`.manifest`; reading a sample's stacks: :mod:`.sample_stacks`;
  random and fixed crops for a network: :mod:`.patch_dataset`;
* patch datasets cut from whole scenes: :mod:`.dataset_builder` (with :mod:`.builder_inputs`,
  :mod:`.scene_patches`, :mod:`.split_assignment`, :mod:`.scene_list`);
* data made for training: masks for samples without any (:mod:`.cloud_shadow_masks`), synthetic
  clouds (:mod:`.synthetic_clouds`), terrain-aware semi-synthetic scenes (:mod:`.semisynthetic`,
  with :mod:`.spectral_library`, :mod:`.optical_simulation`, :mod:`.sar_simulation`), manifests
  over the shared sample data (:mod:`.sample_manifests`, :mod:`.sample_data`);
* the training run: :mod:`.loop` (with :mod:`.training_config`, :mod:`.training_data`,
  :mod:`.trainer`);
* evaluation against the baselines: :mod:`.baselines`, :mod:`.model_evaluation`.
"""
