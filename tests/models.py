"""Real MLflow models for serving tests, registered next to the assistant by fixtures.

They are pickled by reference to this module, so the server process that loads them (this
test process) finds their code here.
"""

from __future__ import annotations

import time
from typing import Any

import mlflow
import pandas as pd

UNLOADABLE = "sandbox.tests.unloadable"


class Unloadable(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """A model whose load always fails, as a model with a broken dependency would."""

    def load_context(self, context: Any) -> None:
        raise RuntimeError("this test model cannot be loaded")

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input


class Sleeper(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """Answers each question with itself; ``sleep:<s>`` takes that long first and
    ``raise:<msg>`` fails, so a server's limits can be driven exactly."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        answers = []
        for question in model_input.iloc[:, 0]:
            verb, _, arg = str(question).partition(":")
            if verb == "sleep":
                time.sleep(float(arg))
            elif verb == "raise":
                raise RuntimeError(arg)
            answers.append(str(question))
        return pd.DataFrame({"answer": answers})


SLOW = "sandbox.tests.slow_to_load"


class SlowToLoad(Sleeper):
    """A sleeper that takes a few seconds to load (room to stop a server mid-update)."""

    def load_context(self, context: Any) -> None:
        time.sleep(4)


class Broken(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """Loads, then fails every request (a shadow candidate with a bug)."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        raise RuntimeError("this test model fails every request")


class Lagging(Sleeper):
    """A sleeper that takes 0.2 s per request whatever it is asked (a slow candidate)."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        time.sleep(0.2)
        return super().predict(context, model_input, params)


class Shouter(Sleeper):
    """A sleeper that answers in capitals (a version whose answers differ visibly)."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        answers = super().predict(context, model_input, params)
        return answers.assign(answer=answers["answer"].str.upper())
