"""Train the iris classifier from scikit-learn's bundled data set (runs at build time)."""

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split


def main() -> None:
    data = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.2, random_state=0, stratify=data.target
    )
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    print(f"iris: test accuracy {model.score(x_test, y_test):.3f}")
    joblib.dump({"model": model, "labels": list(data.target_names)}, "model.joblib")


if __name__ == "__main__":
    main()
