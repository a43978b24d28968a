"""TensorBoard HParams for a sweep trial, written by the sweep driver without importing torch.

The trial's scalars (written by ``fit``) and its HParams entry live in one TensorBoard run,
``<storage>/tb/<sweep>/<run_id>``, so ``tensorboard --logdir <storage>/tb`` shows one run per trial and
the HParams tab one row per trial (config against its metrics). The three summaries the HParams
plugin reads (experiment, session start, session end) are built from TensorBoard's own protobufs, as
``torch.utils.tensorboard`` does, so the driver stays torch-free (importing torch costs it ~3 s of CPU
while trials are training on the same cores).

The HParams tab takes a metric's value from a scalar series of the run (its last point). Its metrics
are therefore the curves ``fit`` already logs every epoch (``val/<metric>``, :data:`CURVE_PREFIX`): the
table shows each trial's last epoch, and the Scalars tab gains nothing. Copying the final metrics
into scalars of their own would add one one-point chart per metric (35 of them) to the Scalars tab;
the best epoch's values and the test metrics are in the results store (``busray results show``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams.api_pb2 import DataType, Experiment, HParamInfo, MetricInfo, MetricName, Status
from tensorboard.plugins.hparams.metadata import (EXPERIMENT_TAG, PLUGIN_DATA_VERSION, PLUGIN_NAME,
                                                  SESSION_END_INFO_TAG, SESSION_START_INFO_TAG)
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo, SessionStartInfo
from tensorboard.summary.writer.event_file_writer import EventFileWriter

#: The metrics ``fit`` logs as a curve, one point per epoch (busray/training/loop.py): the ones the HParams
#: tab can show. ``test/*`` is measured once, after training, and has no curve.
CURVE_PREFIX = "val/"


def write_hparams(log_dir: str | Path, hparams: dict[str, Any], metrics: Iterable[str], step: int = 0) -> None:
    """One HParams row: ``hparams`` (numbers, strings, bools) against the run's curves among ``metrics``
    (metric names such as ``val/seg/iou``; a dict's keys)."""
    curves = [name for name in metrics if name.startswith(CURVE_PREFIX)]
    hparams = {k: v for k, v in hparams.items() if v is not None}
    writer = EventFileWriter(str(log_dir), filename_suffix=".hparams")
    try:
        for summary in _plugin_summaries(hparams, curves):
            writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))
    finally:
        writer.close()


def _plugin_summaries(hparams: dict[str, Any], metric_names: list[str]) -> list[Summary]:
    start = SessionStartInfo()
    infos = []
    for name, value in hparams.items():
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
            kind = "DATA_TYPE_BOOL"
        elif isinstance(value, (int, float)):
            start.hparams[name].number_value = float(value)
            kind = "DATA_TYPE_FLOAT64"
        else:
            start.hparams[name].string_value = str(value)
            kind = "DATA_TYPE_STRING"
        infos.append(HParamInfo(name=name, type=DataType.Value(kind)))
    experiment = Experiment(hparam_infos=infos, metric_infos=[
        MetricInfo(name=MetricName(tag=m)) for m in metric_names])
    end = SessionEndInfo(status=Status.Value("STATUS_SUCCESS"))
    return [_summary(EXPERIMENT_TAG, HParamsPluginData(experiment=experiment, version=PLUGIN_DATA_VERSION)),
            _summary(SESSION_START_INFO_TAG,
                     HParamsPluginData(session_start_info=start, version=PLUGIN_DATA_VERSION)),
            _summary(SESSION_END_INFO_TAG, HParamsPluginData(session_end_info=end, version=PLUGIN_DATA_VERSION))]


def _summary(tag: str, data: HParamsPluginData) -> Summary:
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
        plugin_name=PLUGIN_NAME, content=data.SerializeToString()))
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata)])


def hparam_value(value: Any) -> Any:
    """A config value as an HParams value (lists and None as text)."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)

