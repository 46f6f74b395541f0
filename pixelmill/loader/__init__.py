"""Load a workflow file and validate everything, reporting every problem at once.

Where each part lives:

- ``load`` - one file: read it, run the checks below in layers, return a ``LoadedWorkflow`` or raise
  ``WorkflowInvalid`` with every problem;
- ``check`` - the ``Check`` that collects errors and warnings, each at its ``file:line:col``;
- ``structure`` - steps, duplicate ids, node types and versions, configs, literal inputs, input specs,
  nodes' ``check_step`` hooks;
- ``references`` - expressions and ``needs``: syntax, names, references to inputs, steps and outputs, and
  the dependencies they make;
- ``order`` - the dependency order and cycles;
- ``triggers`` - schedules, webhook auth, calendar entries;
- ``folder`` - a folder of workflows: which files, names and webhook routes unique across files.

YAML with positions is read by ``pixelmill/yamlsource.py``, the workflow's shape is ``pixelmill/model.py``.
The names other code imports stay importable from ``pixelmill.loader``.
"""

from ..model import InputSpec
from .folder import is_calendar_file, load_many, workflow_files
from .load import LoadedWorkflow, load_file, load_text
from .references import CONTEXT_ROOTS, ITEM_ROOTS

__all__ = ["LoadedWorkflow", "load_text", "load_file", "load_many", "workflow_files", "InputSpec",
           "is_calendar_file", "CONTEXT_ROOTS", "ITEM_ROOTS"]
