"""Runs the docstring examples (``>>>``) of every module of the ``jsnn`` package.

One test per module, so a broken example names its module; modules known to carry
examples must keep at least one (an example deleted by accident fails here).
"""

import doctest
import importlib
import pkgutil

import pytest

import jsnn

MODULES = sorted(m.name for m in pkgutil.walk_packages(jsnn.__path__, prefix="jsnn."))
# Modules whose docstrings hold runnable examples today; the list only grows.
WITH_EXAMPLES = ("jsnn.attacks", "jsnn.attacks.apgd", "jsnn.attacks.autoattack", "jsnn.attacks.common", "jsnn.attacks.compact",
                 "jsnn.attacks.eot", "jsnn.attacks.events", "jsnn.attacks.fab", "jsnn.attacks.fgsm", "jsnn.attacks.ensemble", "jsnn.attacks.gradients",
                 "jsnn.attacks.losses", "jsnn.attacks.pgd", "jsnn.attacks.square", "jsnn.attacks.transfer",
                 "jsnn.attacks.adaptive", "jsnn.attacks.sapgd",
                 "jsnn.certify", "jsnn.certify.driver", "jsnn.certify.smoothing", "jsnn.data", "jsnn.data.augment", "jsnn.data.digits", "jsnn.data.event_digits",
                 "jsnn.data.events", "jsnn.data.info", "jsnn.data.pipeline", "jsnn.data.tfds",
                 "jsnn.defenses", "jsnn.defenses.adversarial", "jsnn.defenses.base", "jsnn.defenses.distill",
                 "jsnn.defenses.feature_variance", "jsnn.defenses.noise", "jsnn.defenses.orthogonal",
                 "jsnn.defenses.sparse_gradient", "jsnn.defenses.stability", "jsnn.defenses.trades",
                 "jsnn.bptt", "jsnn.conv", "jsnn.encoding", "jsnn.interop", "jsnn.interop.nir", "jsnn.interop.nir_workdir", "jsnn.interop.trace",
                 "jsnn.evaluate", "jsnn.evaluate.events", "jsnn.evaluate.report", "jsnn.evaluate.runner",
                 "jsnn.evaluate.sanity", "jsnn.evaluate.settings", "jsnn.evaluate.suite", "jsnn.layers", "jsnn.losses",
                 "jsnn.models", "jsnn.models.base",
                 "jsnn.models.resnet", "jsnn.models.sequential", "jsnn.models.small", "jsnn.models.stem", "jsnn.models.vgg", "jsnn.models.wrappers", "jsnn.neuron", "jsnn.parallel",
                 "jsnn.surrogate", "jsnn.sweep", "jsnn.sweep.grid", "jsnn.sweep.runner", "jsnn.sweep.summary",
                 "jsnn.tensorboard", "jsnn.train")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_walks_the_package():
    assert "jsnn.neuron" in MODULES and "jsnn.models.base" in MODULES
    missing = [m for m in WITH_EXAMPLES if m not in MODULES]
    assert not missing, f"modules listed in WITH_EXAMPLES no longer exist: {missing}"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    # Only the module's own objects (not names it re-exports from elsewhere, tested there).
    tests = [t for t in finder.find(module, name) if t.examples]
    failures = []
    for test in tests:
        out = []
        result = runner.run(test, out=out.append, clear_globs=True)
        if result.failed:
            failures.append("".join(out))
    assert not failures, f"{name}: failing docstring examples:\n" + "\n".join(failures)
    if name in WITH_EXAMPLES:
        assert sum(len(t.examples) for t in tests) > 0, f"{name}: its docstring examples are gone"
