"""bench/train_throughput.py --profile --by: op time grouped by op type, by model and pass, by layer."""
from __future__ import annotations

import collections
import importlib.util
from pathlib import Path


def _bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOTALS = collections.Counter({
    "class_guide_3/group_norm_1/Mean:Mean": 5,
    "gradient_tape/class_guide_5/group_norm_1/mul:Mul": 7,
    "gradient_tape/class_guide_3/conv2d/Conv2DBackpropFilter:_MklNativeConv2DBackpropFilter": 11,
    "sngan_generator_1/up_conv_4_1/conv2d_transpose:_MklNativeConv2DBackpropInput": 13,
    "sngan_generator_3/up_conv_4_1/conv2d_transpose:_MklNativeConv2DBackpropInput": 17,
    "GatherV2_7:GatherV2": 19,
})


def test_profile_groups_op_time_by_op_model_and_layer_scope():
    bench = _bench()
    assert bench.group_times(TOTALS, "op") == {"Mean": 5, "Mul": 7, "_MklNativeConv2DBackpropFilter": 11,
                                               "_MklNativeConv2DBackpropInput": 30, "GatherV2": 19}
    assert bench.group_times(TOTALS, "model") == {"class_guide forward": 5, "class_guide backward": 18,
                                                  "sngan_generator forward": 30, "other forward": 19}
    assert bench.group_times(TOTALS, "layer") == {"class_guide/group_norm_1 forward": 5,
                                                  "class_guide/group_norm_1 backward": 7,
                                                  "class_guide/conv2d backward": 11,
                                                  "sngan_generator/up_conv_4_1 forward": 30, "other forward": 19}
