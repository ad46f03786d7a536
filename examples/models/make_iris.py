"""Train the iris classifiers the local examples serve, from scikit-learn's bundled data set.

    python examples/models/make_iris.py            # writes examples/models/iris/model.joblib
    python examples/models/make_iris.py --out DIR --version 2

Version 1 is a logistic regression, version 2 a decision tree (a "new model version" for the
rollout and canary examples). Nothing is downloaded: the data set ships with scikit-learn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

HERE = Path(__file__).parent


def make(out: Path, version: int = 1) -> Path:
    """Write `out/model.joblib` (once: an existing model is kept) and return its path."""
    path = out / "model.joblib"
    if path.exists():
        return path
    data = load_iris()
    model = (
        LogisticRegression(max_iter=1000)
        if version == 1
        else DecisionTreeClassifier(max_depth=2, random_state=0)
    )
    model.fit(data.data, data.target)
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    joblib.dump(model, tmp)
    tmp.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=int, choices=(1, 2), default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    versions = [args.version] if args.version else [1, 2]
    for version in versions:
        default = HERE / ("iris" if version == 1 else "iris-v2")
        print(make(args.out or default, version))


if __name__ == "__main__":
    main()
