"""Cloud-removal training: ``topoclear:trainmodel``.

torch is imported only when the algorithm runs; without it the algorithm is still listed, and
``canExecute`` tells the user how to install it.
"""
from __future__ import annotations

import os

from qgis.core import (QgsProcessingException, QgsProcessingOutputFile, QgsProcessingOutputNumber,
                       QgsProcessingParameterBoolean, QgsProcessingParameterEnum, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterNumber, QgsProcessingParameterString)

from .base import TorchAlgorithm

#: Loss choices; index 0 keeps the paper's loss.
LOSS_CHOICES = ("paper default", "l1", "carl", "tmarl", "l1_ssim", "ssim", "cgan")

#: Tooltip help of each parameter.
PARAMETER_HELP = {
    "MODEL": "The network to train (its inputs: Sentinel-2, Sentinel-1, terrain, as the model card of each "
             "architecture says).",
    "DATASET": "A manifest (.json or .csv, e.g. the manifest.json of 'Build cloud-removal training patches'), or "
               "a folder holding one, or sub-folders cloudy/, target/, s1/, terrain/, cloud_mask/, shadow_mask/ with "
               "matching file names. Every file must lie in the manifest's folder or in a folder its "
               "external_data_roots list names; every file is checked (complete, band counts) before training.",
    "EPOCHS": "Passes over the training samples (each pass: random crops, flips and rotations).",
    "BATCH_SIZE": "Crops per optimiser step; 0 keeps the paper's (CRT-UNet and UNet 8, DSen2-CR 16, GANs 32).",
    "LR": "Learning rate of the optimiser; 0 keeps the paper's (2e-4; DSen2-CR 7e-5).",
    "PATCH_SIZE": "Side of the random training crops in pixels (256 as CRT-UNet); the samples must be at least "
                  "this large.",
    "LOSS": "The training loss; 'paper default' keeps the architecture's (L1; DSen2-CR CARL, which needs cloud "
            "and shadow masks; GANs adversarial + L1 + SSIM).",
    "SEED": "Seed of the weights, crops, flips and shuffling: the same seed gives the same model on the CPU.",
    "DEVICE": "auto: the first CUDA GPU PyTorch sees, else the CPU; cpu; cuda or cuda:N fails clearly when no "
              "such GPU is usable.",
    "RESUME": "Continue an interrupted or cancelled run from the last checkpoint in the checkpoint folder (same "
              "model and loss).",
    "NO_S1": "Train the optical-only variant of a model that reads Sentinel-1 (samples then need no S1 stack).",
    "FILL_MISSING": "Where a sample lacks the Sentinel-1 or terrain stack the model reads, feed zeros instead of "
                    "refusing the sample (the CRT-UNet ablation's way of removing an input).",
    "AMP": "Use float16 mixed precision on CUDA GPUs (faster, less memory); no effect on the CPU.",
    "STEPS_PER_EPOCH": "Stop each epoch after this many optimiser steps; 0: one pass over the training crops.",
    "CROPS_PER_SAMPLE": "Random crops cut from each training sample per epoch.",
    "TRANSLATOR": "Weights (.safetensors) of a trained SAR-to-optical GAN, loaded into the cloud-removal GAN's "
                  "translator before training (cr_gan only).",
    "CHECKPOINT_DIR": "Where the checkpoints of every epoch (last, best) are written; empty: <output>_checkpoints "
                      "beside the weights. Created with the first checkpoint; never inside the training data.",
    "OUTPUT": "The trained weights (.safetensors); the model card (.json) is written beside them. TopoClear never "
              "overwrites the training data.",
}


def model_names() -> list:
    """The models the training engine can train, in the catalogue's menu order (read without torch)."""
    from ..models.registry import training_models

    return [spec.name for spec in training_models()]


class TrainModelAlgorithm(TorchAlgorithm):
    NAME = "trainmodel"
    DISPLAY = "Train cloud-removal model"
    GROUP = "Cloud removal training"
    GROUP_ID = "cloudtraining"
    PARAMETER_HELP = PARAMETER_HELP
    HELP = (
        "<p>Trains one of TopoClear's cloud-removal networks on your own patches and writes its weights "
        "(<b>.safetensors</b>) with a <b>model card</b> (.json beside them: architecture, bands, value scaling, "
        "training data, epochs, validation metrics).</p>"
        "<p><b>Training data</b>: a manifest (.json or .csv) listing, per sample, the cloudy Sentinel-2 image, "
        "its cloud-free target and, as the model needs, Sentinel-1 (VV, VH in dB), a terrain stack "
        "(from <i>Terrain stack aligned to a scene</i>) and cloud / shadow masks; or a folder holding a "
        "manifest.json, or sub-folders <i>cloudy/</i>, <i>target/</i>, <i>s1/</i>, <i>terrain/</i>, "
        "<i>cloud_mask/</i>, <i>shadow_mask/</i> with matching file names. Samples marked <i>val</i> validate; "
        "without any, 15 % of the samples are held out (5 % more as a test set).</p>"
        "<p><b>Defaults are the papers'</b> (0 or <i>paper default</i>): CRT-UNet and UNet: Adam, learning rate "
        "2e-4, batch 8, L1; DSen2-CR: Nadam, 7e-5, batch 16, CARL (needs masks); GANs: Adam (beta1 0.5), 2e-4, "
        "batch 32, adversarial + 100 L1 + 100 SSIM loss. Patches are random crops (256 px by default) flipped "
        "and rotated by 90 degrees at random.</p>"
        "<p><b>Device</b>: <i>auto</i> uses the first CUDA GPU if PyTorch sees one, else the CPU (full-size "
        "models train slowly on a CPU); <i>cuda:0</i> fails clearly when no GPU is usable. Mixed precision is "
        "used on GPUs.</p>"
        "<p><b>Checks</b>: before training, every file the run reads is opened (a missing, unreadable or truncated "
        "file is refused, naming the sample and the file) and its band count compared with the manifest's band "
        "lists. A manifest reads files inside its own folder only, unless it names other folders in a top-level "
        "<tt>external_data_roots</tt> list.</p>"
        "<p><b>Checkpoints</b> are written after every epoch to the checkpoint folder (by default "
        "<i>&lt;output&gt;_checkpoints</i>, created with the first checkpoint); tick <i>Resume</i> to continue an "
        "interrupted or cancelled run from its last epoch. The run is reproducible: the same seed gives the same "
        "model on the CPU. <i>Zeros for missing S1 or terrain</i> feeds zeros where a sample lacks an input "
        "the model reads (the CRT-UNet ablation); <i>Translator weights</i> are a trained SAR-to-optical GAN for "
        "the cloud-removal GAN.</p>"
        "<p>Needs PyTorch and safetensors.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.models = model_names()
        self.addParameter(QgsProcessingParameterEnum("MODEL", "Model", self.models, defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(
            "DATASET", "Training data (manifest .json / .csv, or a folder)",
            behavior=QgsProcessingParameterFile.File,
            fileFilter="Training manifests (*.json *.csv);;All files (*)"))
        self.addParameter(QgsProcessingParameterNumber("EPOCHS", "Epochs", QgsProcessingParameterNumber.Integer,
                                                       50, minValue=1, maxValue=100000))
        self.addParameter(QgsProcessingParameterNumber(
            "BATCH_SIZE", "Batch size (0 = paper default)", QgsProcessingParameterNumber.Integer, 0,
            minValue=0, maxValue=4096))
        self.addParameter(self.number("LR", "Learning rate (0 = paper default)", 0.0, minimum=0.0, maximum=1.0))
        self.addParameter(QgsProcessingParameterNumber("PATCH_SIZE", "Patch size (px)",
                                                       QgsProcessingParameterNumber.Integer, 256, minValue=16,
                                                       maxValue=4096))
        self.addParameter(QgsProcessingParameterEnum("LOSS", "Loss", list(LOSS_CHOICES), defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber("SEED", "Random seed", QgsProcessingParameterNumber.Integer,
                                                       0, minValue=0))
        self.addParameter(QgsProcessingParameterString("DEVICE", "Device (auto, cpu, cuda, cuda:N)", "auto"))
        self.addParameter(QgsProcessingParameterBoolean("RESUME", "Resume from the last checkpoint", False))
        self.addParameter(self.advanced(QgsProcessingParameterBoolean(
            "NO_S1", "Optical-only variant (no Sentinel-1)", False)))
        self.addParameter(self.advanced(QgsProcessingParameterBoolean(
            "FILL_MISSING", "Zeros for missing S1 or terrain (ablation)", False)))
        self.addParameter(self.advanced(QgsProcessingParameterBoolean("AMP", "Mixed precision on GPU", True)))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "STEPS_PER_EPOCH", "Steps per epoch (0 = one pass over the crops)",
            QgsProcessingParameterNumber.Integer, 0, minValue=0)))
        self.addParameter(self.advanced(QgsProcessingParameterNumber(
            "CROPS_PER_SAMPLE", "Random crops per sample and epoch", QgsProcessingParameterNumber.Integer, 1,
            minValue=1, maxValue=10000)))
        self.addParameter(self.advanced(QgsProcessingParameterFile(
            "TRANSLATOR", "Translator weights (cloud-removal GAN)",
            behavior=QgsProcessingParameterFile.File, fileFilter="safetensors (*.safetensors)", optional=True)))
        self.addParameter(self.advanced(QgsProcessingParameterFolderDestination(
            "CHECKPOINT_DIR", "Checkpoint folder", optional=True,
            createByDefault=False)))
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT", "Trained weights", fileFilter="safetensors (*.safetensors)"))
        self.addOutput(QgsProcessingOutputFile("MODEL_CARD", "Model card (JSON)"))
        self.addOutput(QgsProcessingOutputNumber("VAL_LOSS", "Final validation loss"))
        self.addOutput(QgsProcessingOutputNumber("EPOCHS_DONE", "Epochs completed"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        ok, message = self.canExecute()
        if not ok:
            raise QgsProcessingException(message)
        from ..engine.training.loop import TrainConfig, train

        index = self.parameterAsEnum(parameters, "MODEL", context)
        if not 0 <= index < len(self.models):
            raise QgsProcessingException(f"MODEL: choice {index} is not one of 0..{len(self.models) - 1}")
        model = self.models[index]
        dataset = self.parameterAsFile(parameters, "DATASET", context)
        if not dataset:
            raise QgsProcessingException("DATASET: no training manifest or folder given")
        output = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        if not output.lower().endswith(".safetensors"):
            output = os.path.splitext(output)[0] + ".safetensors"
        checkpoint_dir = self.parameterAsString(parameters, "CHECKPOINT_DIR", context) if parameters.get(
            "CHECKPOINT_DIR") else ""
        if not checkpoint_dir:
            checkpoint_dir = os.path.splitext(output)[0] + "_checkpoints"
        loss = LOSS_CHOICES[self.parameterAsEnum(parameters, "LOSS", context)]
        steps = self.parameterAsInt(parameters, "STEPS_PER_EPOCH", context)
        translator = self.parameterAsFile(parameters, "TRANSLATOR", context)
        config = TrainConfig(
            model=model,
            s1_bands=0 if self.parameterAsBoolean(parameters, "NO_S1", context) else None,
            loss=None if loss == "paper default" else loss,
            lr=self.parameterAsDouble(parameters, "LR", context) or None,
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context) or None,
            epochs=self.parameterAsInt(parameters, "EPOCHS", context),
            patch_size=self.parameterAsInt(parameters, "PATCH_SIZE", context),
            crops_per_sample=self.parameterAsInt(parameters, "CROPS_PER_SAMPLE", context),
            steps_per_epoch=steps or None,
            seed=self.parameterAsInt(parameters, "SEED", context),
            device=self.parameterAsString(parameters, "DEVICE", context) or "auto",
            amp=self.parameterAsBoolean(parameters, "AMP", context),
            missing_inputs="zeros" if self.parameterAsBoolean(parameters, "FILL_MISSING", context) else "error",
            checkpoint_dir=checkpoint_dir,
            resume=self.parameterAsBoolean(parameters, "RESUME", context),
            translator_weights=translator or None,
            output=output,
        )
        monitor = self.monitor(feedback)

        def run():
            try:
                return train(config, dataset, monitor)
            except (ValueError, TypeError) as exc:  # bad band lists or model options from the registry
                raise QgsProcessingException(f"Cannot train {model}: {exc}") from exc

        result = self.run_engine(run, feedback)
        val = result.final_val_loss
        feedback.pushInfo(f"Weights: {result.weights_path}; model card: {result.card_path}; "
                          f"{result.steps} steps in {result.time_s:.0f} s on {result.device}")
        return {"OUTPUT": str(result.weights_path), "MODEL_CARD": str(result.card_path),
                "CHECKPOINT_DIR": checkpoint_dir,
                "VAL_LOSS": float(val) if val is not None else float("nan"),
                "EPOCHS_DONE": int(result.card.get("training", {}).get("epochs", 0))}
