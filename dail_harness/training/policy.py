"""The model being trained and its frozen reference.

With LoRA (the default) there is one copy of the weights: the student runs with the adapter on, and
every reference context (the privileged student, the negative reference, the reference policy of a KL
term) runs with the adapter disabled. With `--lora-r 0` every weight trains (full fine-tuning, as RL
papers usually do), and a frozen copy of the starting model serves the references, loaded only when
the loss has reference contexts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from dail_harness.errors import HarnessError
from dail_harness.files import apply_umask_modes, temp_dir
from dail_harness.training.config import TrainConfig


class Policy:
    @classmethod
    def wrap(cls, model: Any, frozen: Any = None) -> Policy:
        """A policy around a model already built (a PEFT model, or a full model and its frozen copy)."""
        policy = cls.__new__(cls)
        policy.model, policy.frozen, policy.frozen_decoder = model, frozen, None
        return policy

    def __init__(self, path: str, cfg: TrainConfig, dtype: torch.dtype, need_reference: bool):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        self.frozen: Any = None
        self.frozen_decoder: Any = None  # with FSDP, the sharded module around the frozen copy's decoder
        if cfg.lora_r > 0:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout,
                target_modules=cfg.lora_targets,
                task_type="CAUSAL_LM",
            )
            self.model: Any = get_peft_model(model, lora)
        else:
            self.model = model
            if need_reference:
                self.frozen = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
                self.frozen.requires_grad_(False)

    @property
    def is_lora(self) -> bool:
        return self.frozen is None and hasattr(self.model, "peft_config")

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def to(self, device: Any) -> None:
        if self.frozen is not None:
            self.frozen.to(device)

    def decoder(self) -> Any:
        return self.model.get_decoder()

    def head(self) -> Any:
        return self.model.get_output_embeddings()

    @contextlib.contextmanager
    def reference(self) -> Iterator[tuple[Any, Any]]:
        """(decoder, head) of the frozen reference, under no_grad."""
        with torch.no_grad():
            if self.frozen is not None:
                yield self.frozen_decoder or self.frozen.get_decoder(), self.frozen.get_output_embeddings()
            elif self.is_lora:
                with self.model.disable_adapter():
                    yield self.model.get_decoder(), self.model.get_output_embeddings()
            else:
                raise HarnessError(
                    "this loss needs reference contexts, but the model was built without a frozen reference"
                )

    def reference_head(self) -> Any:
        """A callable head for reference hidden states (the adapter off, also on a LoRA-wrapped head)."""
        if self.frozen is not None:
            return self.frozen.get_output_embeddings()
        head = self.model.get_output_embeddings()
        if not self.is_lora:
            return head

        def adapter_off(h: torch.Tensor) -> torch.Tensor:
            with self.model.disable_adapter():
                return head(h)

        return adapter_off

    def state_dict(self) -> dict:
        """What a checkpoint needs: the LoRA weights, or every weight when all of them train."""
        if self.is_lora:
            from peft import get_peft_model_state_dict

            return get_peft_model_state_dict(self.model)
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        if self.is_lora:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, state)
        else:
            self.model.load_state_dict(state)

    def load_adapter(self, directory: str | Path) -> None:
        """Start from another run's adapter (`--init RUN_DIR`): its LoRA settings must match this run's."""
        directory = Path(directory)
        if not self.is_lora:
            raise HarnessError(
                "--init loads a LoRA adapter, but --lora-r 0 trains all weights; start from a full "
                "model with --model instead",
                path=str(directory),
            )
        cfg_path = directory / "adapter_config.json"
        if not cfg_path.exists():
            raise HarnessError("not a trained adapter (no adapter_config.json)", path=str(directory))
        theirs = json.loads(cfg_path.read_text())
        ours = self.model.peft_config["default"]
        for key in ("r", "lora_alpha"):
            if theirs.get(key) != getattr(ours, key):
                raise HarnessError(
                    f"its LoRA {key} is {theirs.get(key)}, this run's is {getattr(ours, key)}; use the "
                    "same --lora-r / --lora-alpha",
                    path=str(directory),
                )
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self.model, load_file(str(directory / "adapter_model.safetensors")))

    def save(self, out: Path, tokenizer: Any, base_model: str, merge: bool, weights: dict | None = None) -> None:
        """The adapter in `out` (its base model is the `--model` the user gave, a local directory as an absolute
        path) and optionally `out/merged`; with all weights trained, the full model in `out`. `weights`: the
        whole weights gathered from a sharded model (`sharding.gathered_weights`), saved instead of the model's."""
        from dail_harness.models.loading import recorded_model

        out.mkdir(parents=True, exist_ok=True)
        tmp = temp_dir(out, ".final-")
        self.model.save_pretrained(tmp, **({} if weights is None else {"state_dict": weights}))
        tokenizer.save_pretrained(tmp)
        if self.is_lora:
            adapter_cfg = json.loads((tmp / "adapter_config.json").read_text())
            adapter_cfg["base_model_name_or_path"] = recorded_model(base_model)  # loads from any directory
            (tmp / "adapter_config.json").write_text(json.dumps(adapter_cfg, indent=2))
        apply_umask_modes(tmp)
        for f in tmp.iterdir():
            os.replace(f, out / f.name)
        shutil.rmtree(tmp, ignore_errors=True)
        if merge and self.is_lora:
            merged_tmp = temp_dir(out, ".merged-")
            self._merged(out, weights).save_pretrained(merged_tmp)
            tokenizer.save_pretrained(merged_tmp)
            apply_umask_modes(merged_tmp)
            if (out / "merged").exists():
                shutil.rmtree(out / "merged")
            os.rename(merged_tmp, out / "merged")

    def _merged(self, out: Path, weights: dict | None) -> Any:
        """The model with the adapter merged in; from a sharded model, rebuilt on the CPU from the base weights
        and the adapter just saved in `out`."""
        if weights is None:
            return self.model.merge_and_unload()
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        dtype = next(
            p.dtype for n, p in self.model.named_parameters() if "lora_" not in n
        )  # the base's, not the adapter's
        base_path = self.model.peft_config["default"].base_model_name_or_path
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
        return PeftModel.from_pretrained(base, str(out)).merge_and_unload()
