"""The hooks a weightlint plugin can implement. Built-in rules use exactly these.

A plugin is a module (or object) with functions named after these hooks and marked with
``@weightlint.hookimpl``. Third-party plugins register under the ``weightlint`` entry-point
group; ``-p module`` loads one for a run and ``-p no:NAME`` blocks one.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("weightlint")
hookimpl = pluggy.HookimplMarker("weightlint")


@hookspec
def weightlint_rules():
    """Declare the rules this plugin provides.

    :return: a list of :class:`weightlint.Rule`. Declared rules appear in ``weightlint rules``,
        ``weightlint explain`` and the reports, and can be selected, ignored and configured.
    """


@hookspec
def weightlint_check_tensor(tensor, stats, context):
    """Check one tensor, as the stream passes it.

    :param tensor: the :class:`weightlint.TensorRecord` (name, shape, dtype, file).
    :param stats: the tensor's :class:`weightlint.TensorStats`, shared by every rule: ask it for
        statistics instead of computing them, so that each is computed once.
    :param context: the :class:`weightlint.CheckContext`; ``context.options(RULE, tensor)`` gives
        the rule's thresholds for this tensor (configuration overrides applied), or ``None`` when the
        rule is not selected for it. Hooks run in worker threads (``--jobs``): keep them free of
        shared mutable state.
    :return: a finding, a list of findings, or ``None``.
    """


@hookspec
def weightlint_check_model(model, context):
    """Check the whole model once every tensor has streamed past.

    :param model: the :class:`weightlint.ModelView`: every record, the statistics that were
        computed for it (the tensor data itself is gone) and the sources. ``context.active(RULE)``
        says whether the rule runs at all; ``context.options(RULE, record)`` gives per-tensor options.
    :return: a list of findings or ``None``.
    """


@hookspec
def weightlint_file_problem(problem, context):
    """Turn a problem with a file (unreadable, unsafe pickle, broken index) into findings.

    :param problem: a :class:`weightlint.sources.Problem`.
    :return: a list of findings or ``None``.
    """


@hookspec
def weightlint_check_pair(pair, context):
    """Check one tensor of ``weightlint diff``: the same tensor in two checkpoints of one model.

    :param pair: a :class:`weightlint.diff.engine.TensorPair`: the two records (``old``, ``new``) and the
        statistics of the change (``l2_norm_ratio``, ``relative_change``, ``cosine``,
        ``condition_number_ratio`` …). The tensor data is gone by then.
    :return: a finding, a list of findings, or ``None``.
    """


@hookspec
def weightlint_check_diff(diff, context):
    """Check a whole ``weightlint diff`` once every pair has been compared.

    :param diff: a :class:`weightlint.diff.engine.DiffView`: every pair, and the tensors added, removed,
        reshaped or re-typed between the two checkpoints.
    :return: a list of findings or ``None``.
    """


@hookspec
def weightlint_check_adapter(adapter, context):
    """Check a PEFT adapter once its tensors have streamed past (a source with ``adapter_config.json``).

    :param adapter: a :class:`weightlint.adapter.view.AdapterView`: the configuration, each module's
        LoRA pair with what its update ΔW = scale·B·A measures (``norm``, ``rank``, ``top_rows_share``
        … and, with ``--base-model``, ``relative_norm``), the full tensors, and the files beside it.
    :return: a list of findings or ``None``.
    """
