"""Train the iris classifiers the local examples serve, from scikit-learn's bundled data set.

    python examples/models/make_iris.py            # every model below
    python examples/models/make_iris.py --out DIR --version 2

- `iris/model.joblib`: version 1, a logistic regression;
- `iris-v2/model.joblib`: version 2, a decision tree (the "new model version" of the rollout
  and canary examples);
- `iris-xgboost/model.ubj`: an XGBoost booster (`--version xgboost`).

Nothing is downloaded: the data set ships with scikit-learn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

HERE = Path(__file__).parent


def make_xgboost(out: Path) -> Path:
    import xgboost

    path = out / "model.ubj"
    if path.exists():
        return path
    data = load_iris()
    booster = xgboost.train(
        {"objective": "multi:softmax", "num_class": 3, "max_depth": 3, "nthread": 1},
        xgboost.DMatrix(data.data, label=data.target),
        num_boost_round=10,
    )
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.tmp.ubj"
    booster.save_model(tmp)
    tmp.replace(path)
    return path


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
    parser.add_argument("--version", choices=("1", "2", "xgboost"), default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    versions = [args.version] if args.version else ["1", "2", "xgboost"]
    for version in versions:
        if version == "xgboost":
            print(make_xgboost(args.out or HERE / "iris-xgboost"))
        else:
            default = HERE / ("iris" if version == "1" else "iris-v2")
            print(make(args.out or default, int(version)))


if __name__ == "__main__":
    main()
