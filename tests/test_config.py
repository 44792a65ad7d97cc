"""lfmlf.config: every bad sweep input is one clear ConfigError (file, key, fix); valid sweeps load,
resolve their paths and expand variables; config objects are frozen; trial_spec combines sweep + sample."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from lfmlf.checks import load_checked
from lfmlf.config import ConfigError, SweepConfig, TrialSpec, trial_spec

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "config"
QUICKSTART = REPO / "sweeps" / "quickstart.yaml"
UNER = REPO / "sweeps" / "uner_e5.yaml"


from tests.conftest import DEFAULT_DATA, real_data
from tests.fixtures.config import cases  # shared with the other config test module

_BY_ID = {c.id: c for c in cases.CASES}


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in cases.UNSET_ENV:
        monkeypatch.delenv(name, raising=False)


def _error(case, tmp_path: Path) -> tuple[Path, str]:
    path = cases.build(case, tmp_path)
    with pytest.raises(ConfigError) as ei:
        load_checked(path, list(case.overrides))
    return path, str(ei.value)


# ---------------------------------------------------------------- bad input: one clear error per class


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_bad_input_is_one_clear_config_error(case, tmp_path: Path) -> None:
    path, msg = _error(case, tmp_path)
    assert msg.startswith(str(path)), msg                 # names the file, first
    assert "\n\n" not in msg and msg.strip() == msg      # one paragraph
    assert "Traceback" not in msg
    if case.key is not None:
        assert f"'{case.key}'" in msg or case.key in msg, msg
    assert "Fix:" in msg, msg
    for fragment in case.expect:
        assert fragment in msg, msg


def test_every_error_class_of_the_brief_is_covered() -> None:
    # the list in cases.py is the contract; losing an entry must be a visible failure
    required = {"unknown_train_key", "unknown_files_key", "wrong_type_int", "unknown_source_language",
                "unknown_target_language", "missing_data_file", "source_without_train_file",
                "empty_source_pool", "target_in_source_pool", "unknown_method", "unknown_method_param",
                "space_unknown_param_in_file", "space_low_above_high", "space_log_low_not_positive",
                "missing_space_file", "undefined_env_var", "batch_too_small", "eval_every_above_max_steps",
                "yaml_syntax_error", "missing_sweep_file", "model_dir_without_config"}
    assert required <= set(_BY_ID)


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path: Path) -> None:
    path = cases.build(cases.Case("no_match"), tmp_path)
    with pytest.raises(ConfigError) as ei:
        load_checked(path, ["train.zzzzzz=1"])
    msg = str(ei.value)
    assert "unknown key 'train.zzzzzz'" in msg
    assert "valid keys here:" in msg and "batch_size" in msg and "lr" in msg


def test_every_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    path = cases.build(cases.Case("two_problems"), tmp_path)
    with pytest.raises(ConfigError) as ei:
        load_checked(path, ["train.lrr=1", "train.batch_size=abc"])
    lines = str(ei.value).splitlines()
    assert len(lines) == 2
    assert all(line.startswith(str(path)) for line in lines)
    assert any("train.lrr" in line for line in lines) and any("train.batch_size" in line for line in lines)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_missing_sweep_file_names_the_working_directory(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as ei:
        load_checked("sweeps/nope.yaml")
    msg = str(ei.value)
    assert msg.startswith("sweeps/nope.yaml: no such file")
    assert str(tmp_path) in msg


def test_sweep_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_checked(tmp_path)


def test_model_dir_error_names_the_resolved_dir(tmp_path: Path) -> None:
    path, msg = _error(_BY_ID["model_dir_without_config"], tmp_path)
    assert str(path.parent / "encoder") in msg


def test_batch_check_uses_the_largest_possible_set() -> None:
    cfg = load_checked(QUICKSTART, ["languages.max_sources=10", "train.batch_size=8"])
    assert cfg.train.batch_size == 8


# ---------------------------------------------------------------- valid sweeps


def test_quickstart_loads() -> None:
    cfg = load_checked(QUICKSTART)
    assert isinstance(cfg, SweepConfig)
    assert cfg.name == "quickstart"
    assert cfg.source == str(QUICKSTART.resolve())
    assert cfg.task.format == "synthetic" and cfg.task.max_length == 64
    assert cfg.model.name_or_path == "tiny"
    assert cfg.languages.sources == ["de", "en", "es", "nl"]
    assert cfg.languages.targets == ["fr", "it"]
    assert cfg.source_sets() == ["de+en", "en+es", "en+nl", "de+en+es", "de+en+nl", "en+es+nl"]
    assert set(cfg.methods) == {"mlf", "lfmlf"}
    assert cfg.methods["mlf"].space == str(REPO / "search_spaces" / "quickstart_mlf.yaml")
    assert cfg.methods["lfmlf"].space == str(REPO / "search_spaces" / "quickstart_lfmlf.yaml")
    assert cfg.methods["lfmlf"].params == {"forgetting": "l2"}
    assert (cfg.train.max_steps, cfg.train.eval_every, cfg.train.batch_size) == (120, 30, 24)
    assert cfg.search.num_samples == 4
    assert cfg.search.scheduler.name == "asha" and cfg.search.scheduler.grace_period == 2


def test_quickstart_run_dir_defaults_to_runs_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_checked(QUICKSTART).run_dir == tmp_path.resolve() / "runs" / "quickstart"
    assert load_checked(QUICKSTART, [f"output_dir={tmp_path / 'out'}"]).run_dir == tmp_path / "out"


def test_overrides_apply_and_are_validated() -> None:
    cfg = load_checked(QUICKSTART, ["train.max_steps=20", "train.eval_every=10", "search.num_samples=1",
                                  "languages.targets=[fr]", "methods.lfmlf.params.slack=0.25"])
    assert (cfg.train.max_steps, cfg.train.eval_every, cfg.search.num_samples) == (20, 10, 1)
    assert cfg.languages.targets == ["fr"]
    assert cfg.methods["lfmlf"].params == {"forgetting": "l2", "slack": 0.25}
    assert load_checked(QUICKSTART, {"train.lr": "0.002"}).train.lr == 0.002   # a mapping works too


def test_loading_does_not_touch_the_yaml(tmp_path: Path) -> None:
    path = cases.build(cases.Case("untouched"), tmp_path)
    before = path.read_text()
    load_checked(path, ["train.max_steps=60"])
    assert path.read_text() == before


def _use_data(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweeps read ${LFMLF_DATA_DIR:-../../shared/data}: leave it unset where the data is at that default,
    so the default itself is what a test checks."""
    real_data("uner")
    if data_dir.resolve() != DEFAULT_DATA.resolve():
        monkeypatch.setenv("LFMLF_DATA_DIR", str(data_dir))


def test_uner_e5_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    encoder = tmp_path / "e5-6l"
    encoder.mkdir()
    (encoder / "config.json").write_text("{}")
    monkeypatch.setenv("LFMLF_ENCODER_DIR", str(encoder))
    monkeypatch.delenv("LFMLF_DATA_DIR", raising=False)
    _use_data(data_dir, monkeypatch)
    cfg = load_checked(UNER)
    assert cfg.name == "uner_e5"
    assert cfg.task.format == "conll"
    assert cfg.task.data_dir == str(data_dir.resolve())          # by default ../../shared/data relative to sweeps/
    assert cfg.model.name_or_path == str(encoder)
    assert cfg.model.freeze_embeddings is True
    assert cfg.languages.sources == ["da", "en", "pt", "sv"] and cfg.languages.targets == ["de", "ru"]
    assert len(cfg.source_sets()) == 15                           # every non-empty subset of 4
    assert cfg.methods["lfmlf"].space == str(REPO / "search_spaces" / "lfmlf.yaml")


def test_uner_e5_without_encoder_explains_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          data_dir: Path) -> None:
    _use_data(data_dir, monkeypatch)
    monkeypatch.setenv("LFMLF_ENCODER_DIR", str(tmp_path / "not-built"))
    with pytest.raises(ConfigError) as ei:
        load_checked(UNER)
    msg = str(ei.value)
    assert "uner_e5.yaml" in msg and "model.name_or_path" in msg and "build_encoder.py" in msg


def test_uner_e5_data_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = tmp_path / "enc"
    encoder.mkdir()
    (encoder / "config.json").write_text("{}")
    monkeypatch.setenv("LFMLF_ENCODER_DIR", str(encoder))
    monkeypatch.setenv("LFMLF_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError) as ei:          # the env var is used: the files are looked up there
        load_checked(UNER)
    assert str(tmp_path / "elsewhere" / "uner") in str(ei.value)


def test_relative_paths_resolve_against_the_yaml_folder(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    exp = tmp_path / "exp"
    shutil.copytree(FIXTURES / "conll", exp)
    (exp / "encoder").mkdir()
    (exp / "encoder" / "config.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_checked("../exp/sweep.yaml", ["model.name_or_path=./encoder"])
    assert cfg.task.data_dir == str(exp / "data")
    assert cfg.methods["lfmlf"].space == str(exp / "spaces" / "lfmlf.yaml")
    assert cfg.methods["mlf"].space is None
    assert cfg.model.name_or_path == str(exp / "encoder")
    assert cfg.source == str(exp / "sweep.yaml")


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    shutil.copytree(FIXTURES / "conll", exp)
    data = tmp_path / "absdata"
    shutil.copytree(exp / "data", data)
    cfg = load_checked(exp / "sweep.yaml", [f"task.data_dir={data}"])
    assert cfg.task.data_dir == str(data)


def test_hub_model_names_are_not_paths() -> None:
    cfg = load_checked(QUICKSTART, ["model.name_or_path=intfloat/multilingual-e5-small"])
    assert cfg.model.name_or_path == "intfloat/multilingual-e5-small"


def test_env_default_used_when_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LFMLF_TEST_DATA", raising=False)
    exp = tmp_path / "exp"
    shutil.copytree(FIXTURES / "conll", exp)
    cfg = load_checked(exp / "sweep.yaml", ["task.data_dir=${LFMLF_TEST_DATA:-data}",
                                          "name=${LFMLF_TEST_NAME:-from_default}"])
    assert cfg.task.data_dir == str(exp / "data")           # the default, then resolved like any path
    assert cfg.name == "from_default"


def test_env_value_wins_over_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = tmp_path / "exp"
    shutil.copytree(FIXTURES / "conll", exp)
    shutil.copytree(exp / "data", tmp_path / "other")
    monkeypatch.setenv("LFMLF_TEST_DATA", "../other")
    monkeypatch.setenv("LFMLF_TEST_NAME", "from_env")
    cfg = load_checked(exp / "sweep.yaml", ["task.data_dir=${LFMLF_TEST_DATA:-data}",
                                          "name=${LFMLF_TEST_NAME}"])
    assert cfg.task.data_dir == str(tmp_path / "other")
    assert cfg.name == "from_env"


def test_env_expansion_inside_text_and_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LFMLF_TEST_SUFFIX", "v2")
    monkeypatch.delenv("LFMLF_TEST_LR", raising=False)
    cfg = load_checked(QUICKSTART, ["name=qs-${LFMLF_TEST_SUFFIX}-${LFMLF_TEST_MISSING:-x}",
                                  "train.lr=${LFMLF_TEST_LR:-0.002}"])
    assert cfg.name == "qs-v2-x"
    assert cfg.train.lr == 0.002


def test_empty_default_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LFMLF_TEST_SUFFIX", raising=False)
    assert load_checked(QUICKSTART, ["name=qs${LFMLF_TEST_SUFFIX:-}"]).name == "qs"


def test_configs_are_frozen() -> None:
    cfg = load_checked(QUICKSTART)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.name = "other"
    with pytest.raises(ValidationError, match="frozen"):
        cfg.train.lr = 1.0
    with pytest.raises(ValidationError, match="frozen"):
        cfg.languages.targets = ["de"]
    with pytest.raises(ValidationError, match="frozen"):
        cfg.methods["lfmlf"].params = {}
    spec = trial_spec(cfg, {"method": "mlf", "source_set": "de+en"})
    with pytest.raises(ValidationError, match="frozen"):
        spec.sources = ("en",)
    assert cfg.name == "quickstart" and cfg.train.lr == 5e-5


def test_config_is_picklable() -> None:
    import pickle

    cfg = load_checked(QUICKSTART)
    assert pickle.loads(pickle.dumps(cfg)) == cfg


# ---------------------------------------------------------------- trial_spec


def test_trial_spec_combines_sweep_and_sample() -> None:
    cfg = load_checked(QUICKSTART)
    spec = trial_spec(cfg, {"method": "lfmlf", "lr": 1e-3, "slack": 0.3, "source_set": "de+en"})
    assert isinstance(spec, TrialSpec)
    assert spec.sweep == "quickstart"
    assert spec.method == "lfmlf"
    assert spec.sources == ("de", "en")
    assert spec.targets == ("fr", "it")
    assert spec.pool == ("de", "en", "es", "fr", "it", "nl")
    assert spec.train.lr == 1e-3
    assert spec.train.max_steps == 120 and spec.train.batch_size == 24     # the rest is the sweep's
    assert spec.method_params == {"forgetting": "l2", "slack": 0.3}
    assert spec.task == cfg.task and spec.model == cfg.model
    assert cfg.train.lr == 5e-5                                             # the sweep is unchanged
    flat = spec.flat_params()
    assert flat["method"] == "lfmlf"
    assert flat["lr"] == "0.001"
    assert flat["source_set"] == "de+en"
    assert flat["slack"] == "0.3"
    assert flat["forgetting"] == "l2"
    assert flat["train.max_steps"] == "120"
    assert "train.lr" not in flat
    assert all(isinstance(v, str) for v in flat.values())


def test_trial_spec_without_source_set_uses_the_whole_pool() -> None:
    cfg = load_checked(QUICKSTART)
    spec = trial_spec(cfg, {"method": "mlf"})
    assert spec.sources == ("de", "en", "es", "nl")
    assert spec.method_params == {}
    assert spec.train == cfg.train


def test_trial_spec_rejects_non_canonical_source_set() -> None:
    from lfmlf.languages import LanguageError

    cfg = load_checked(QUICKSTART)
    with pytest.raises(LanguageError, match="de\\+en"):
        trial_spec(cfg, {"method": "mlf", "source_set": "en+de"})


def test_trial_spec_revalidates_train_values() -> None:
    cfg = load_checked(QUICKSTART)
    with pytest.raises(ValidationError):
        trial_spec(cfg, {"method": "mlf", "lr": -1.0})
