"""A trial's HParams entry: in the HParams tab only, its metrics read from the run's own curves.

Read back with TensorBoard's own event loading, and with the handler behind the HParams tab's table
(``ListSessionGroups``), so what the tab shows is what is checked.
"""

from __future__ import annotations

from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.context import RequestContext
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups, metadata

from busray.sweep.hparams import write_hparams
from busray.training.tensorboard import TensorBoardLogger

CURVES = {"val/score": [0.2, 0.5, 0.4], "val/seg/iou": [0.1, 0.3, 0.35], "train/loss": [1.0, 0.8, 0.7]}


def _trial_run(tmp_path):
    """A run as a trial leaves it: fit's per-epoch scalars, then the driver's HParams entry."""
    run = tmp_path / "tb" / "trial-0"
    logger = TensorBoardLogger(run)
    for epoch in (1, 2, 3):
        logger.scalars({key: values[epoch - 1] for key, values in CURVES.items()}, step=epoch)
    logger.close()
    final = {"val/score": 0.5, "val/seg/iou": 0.3, "test/seg/iou": 0.28, "test/clf/acc": 0.9}
    write_hparams(run, {"model.tau": 0.5, "model.hmsf": True, "seed": 0}, final, step=3)
    return run


def test_hparams_add_no_scalar_chart(tmp_path):
    events = EventAccumulator(str(_trial_run(tmp_path))).Reload()
    assert sorted(events.Tags()["scalars"]) == sorted(CURVES)  # fit's curves only, no hparams/* copy
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    assert set(content) == {metadata.EXPERIMENT_TAG, metadata.SESSION_START_INFO_TAG,
                            metadata.SESSION_END_INFO_TAG}
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert (start.hparams["model.tau"].number_value, start.hparams["model.hmsf"].bool_value) == (0.5, True)


def test_the_hparams_table_shows_each_trial_against_its_curves_last_epoch(tmp_path):
    run = _trial_run(tmp_path)
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(run.parent))
    multiplexer.Reload()
    context = backend_context.Context(base_plugin.TBContext(
        logdir=str(run.parent), multiplexer=multiplexer,
        data_provider=MultiplexerDataProvider(multiplexer, str(run.parent))))
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=10, aggregation_type=api_pb2.AGGREGATION_AVG,
        allowed_statuses=[api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE,
                          api_pb2.STATUS_RUNNING])
    groups = list_session_groups.Handler(RequestContext(), context, "", request).run().session_groups
    assert [g.name for g in groups] == [run.name]
    hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in groups[0].hparams.items()}
    assert hparams == {"model.tau": 0.5, "model.hmsf": True, "seed": 0.0}
    shown = {m.name.tag: (m.training_step, round(m.value, 6)) for m in groups[0].metric_values}
    assert shown == {"val/score": (3, 0.4), "val/seg/iou": (3, 0.35)}  # test/* has no curve, so no column
