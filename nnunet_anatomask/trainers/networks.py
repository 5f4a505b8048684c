"""The trainer's own network, built through its ``build_network_architecture`` (so a trainer that overrides it
pretrains and checks exactly what it trains), in either signature nnU-Net 2.8 accepts."""
import inspect

import torch
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels


def input_channels(trainer) -> int:
    return determine_num_input_channels(trainer.plans_manager, trainer.configuration_manager, trainer.dataset_json)


def trainer_network(trainer, num_input_channels: int, num_output_channels: int,
                    deep_supervision: bool) -> torch.nn.Module:
    """``trainer.build_network_architecture`` for these channel counts (on the current default device)."""
    build = trainer.build_network_architecture
    if "plans_manager" in inspect.signature(build).parameters:
        return build(trainer.plans_manager, trainer.configuration_manager, num_input_channels, num_output_channels,
                     enable_deep_supervision=deep_supervision)
    cm = trainer.configuration_manager  # the older signature, which nnU-Net 2.8 still accepts
    return build(cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
                 num_input_channels, num_output_channels, deep_supervision)
