"""A trial's HParams entry: in the HParams tab only, its metrics read from the run's own curves.

Read back with TensorBoard's own event loading and the data provider its HParams plugin asks for
metric values (``read_last_scalars`` of the scalars plugin), so what the tab shows is what is checked.
"""

from __future__ import annotations

from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.context import RequestContext
from tensorboard.data.provider import RunTagFilter
from tensorboard.plugins.hparams import metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata

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


def test_hparams_metrics_are_the_curves_the_tab_can_read(tmp_path):
    run = _trial_run(tmp_path)
    content = EventAccumulator(str(run)).Reload().PluginTagToContent(metadata.PLUGIN_NAME)
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    tags = [info.name.tag for info in experiment.metric_infos]
    assert tags == ["val/score", "val/seg/iou"]  # test/* has no curve: a column that would stay empty
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(run.parent))
    multiplexer.Reload()
    last = MultiplexerDataProvider(multiplexer, str(run.parent)).read_last_scalars(
        RequestContext(), experiment_id="", plugin_name=scalar_metadata.PLUGIN_NAME,
        run_tag_filter=RunTagFilter(runs=[run.name], tags=tags))
    assert {tag: (datum.step, round(datum.value, 6)) for tag, datum in last[run.name].items()} == \
        {"val/score": (3, 0.4), "val/seg/iou": (3, 0.35)}  # what the HParams tab shows: the last epoch
