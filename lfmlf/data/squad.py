"""Extractive QA data: SQuAD v1.1 JSON files, hub datasets with SQuAD columns, and synthetic questions.

* :func:`read_squad` reads SQuAD v1.1 JSON (SQuAD, XQuAD, MLQA, TyDi QA GoldP as XTREME ships it):
  ``{"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text",
  "answer_start"}]}]}]}]}``. Malformed input raises :class:`DataError` naming the file, the place
  (``data[3].paragraphs[0].qas[2]``), what is wrong and the fix.
* :func:`load_squad_hub` reads a hub dataset (or a local dataset folder) with the columns ``id``,
  ``context``, ``question``, ``answers`` (``{"text": [...], "answer_start": [...]}``) through
  ``datasets.load_dataset``.
* :func:`synthetic_qa` generates small parallel QA sets for offline quickstarts: the i-th question of a
  split states the same facts in every language (``"Ana Kovacs lives in Valdora."`` / ``"Where does Ana
  Kovacs live?"`` -> ``Valdora``), so zero-shot transfer is learnable by a tiny model.
"""
from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lfmlf.data.base import DataError, read_text_lines

__all__ = ["SYNTHETIC_QA_LANGS", "QaExample", "load_squad_hub", "read_squad", "synthetic_qa"]


@dataclass(frozen=True)
class QaExample:
    """One question over a context; ``answers[i]`` starts at character ``answer_starts[i]`` of ``context``."""

    id: str
    context: str
    question: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.answers) != len(self.answer_starts):
            raise DataError(f"question {self.id!r}: {len(self.answers)} answers but "
                            f"{len(self.answer_starts)} answer starts")


def _answers(raw: Any, context: str, where: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Validated (texts, starts); a start that is off by a few characters is moved to the nearest match."""
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{where}: 'answers' must be a non-empty list of {{'text', 'answer_start'}} "
                        f"(SQuAD v2 unanswerable questions are not supported). Fix: drop the question or "
                        f"give its answer.")
    texts, starts = [], []
    for j, a in enumerate(raw):
        text, start = (a.get("text"), a.get("answer_start")) if isinstance(a, dict) else (None, None)
        if text == "":
            raise DataError(f"{where}.answers[{j}]: the answer text is empty: this file has no gold "
                            f"answers (XTREME's TyDi QA GoldP dev files come with their answers blanked "
                            f"out). Fix: use a labelled copy of the file (e.g. from the TyDi QA GoldP v1.1 "
                            f"release), or evaluate this language on another dataset.")
        if not isinstance(text, str) or not text or isinstance(start, bool) or not isinstance(start, int):
            raise DataError(f"{where}.answers[{j}]: expected {{'text': non-empty string, 'answer_start': "
                            f"int}}, got {a!r}. Fix: correct the answer entry.")
        if context[start:start + len(text)] != text:
            hits = [i for i in range(len(context)) if context.startswith(text, i)]
            if not hits:
                raise DataError(f"{where}.answers[{j}]: the answer {text!r} does not occur in the context. "
                                f"Fix: correct the answer text or the context.")
            given = start
            start = min(hits, key=lambda i: abs(i - given))
        texts.append(text)
        starts.append(start)
    return tuple(texts), tuple(starts)


def _parse(doc: Any, name: str) -> list[QaExample]:
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        got = f"an object with keys {sorted(doc)}" if isinstance(doc, dict) else f"a {type(doc).__name__}"
        raise DataError(f"{name}: expected a JSON object with a 'data' list (SQuAD v1.1 layout), got "
                        f"{got}. Fix: give a SQuAD v1.1 file "
                        f"({{'data': [{{'paragraphs': [{{'context', 'qas'}}]}}]}}).")
    out: list[QaExample] = []
    for a, article in enumerate(doc["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(f"{name}: data[{a}] has no 'paragraphs' list. Fix: use the SQuAD v1.1 layout.")
        for p, para in enumerate(paragraphs):
            where = f"{name}: data[{a}].paragraphs[{p}]"
            context = para.get("context") if isinstance(para, dict) else None
            qas = para.get("qas") if isinstance(para, dict) else None
            if not isinstance(context, str) or not context.strip() or not isinstance(qas, list):
                raise DataError(f"{where}: needs a non-empty string 'context' and a 'qas' list. "
                                f"Fix: use the SQuAD v1.1 layout.")
            for q, qa in enumerate(qas):
                at = f"{where}.qas[{q}]"
                if not isinstance(qa, dict) or not isinstance(qa.get("question"), str) or "id" not in qa:
                    raise DataError(f"{at}: needs 'id', 'question' (string) and 'answers'. Fix: use the "
                                    f"SQuAD v1.1 layout.")
                texts, starts = _answers(qa.get("answers"), context, at)
                out.append(QaExample(str(qa["id"]), context, qa["question"], texts, starts))
    return out


def read_squad(path: str | Path) -> list[QaExample]:
    """Every question of a SQuAD v1.1 JSON file, in file order."""
    p = Path(path)
    text = "\n".join(read_text_lines(p, "SQuAD JSON", ".json"))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}). "
                        f"Fix: repair the file or download it again.") from None
    return _parse(doc, str(p))


# ------------------------------------------------------------------------------------------------- hub
def load_squad_hub(path: str, config: str | None, split: str, *,
                   cache_dir: str | None = None, revision: str | None = None) -> list[QaExample]:
    """A hub dataset (id or local dataset folder) with SQuAD columns, via ``datasets.load_dataset``."""
    what = f"QA dataset {path!r}, config {config!r}, split {split!r}"
    try:
        import datasets  # lazy: slow to import, and only hub formats need it

        ds = datasets.load_dataset(path, config, split=split, cache_dir=cache_dir, revision=revision)
    except Exception as e:  # no network, unknown config or split, corrupt cache, ...
        raise DataError(f"cannot load {what} via datasets.load_dataset: {type(e).__name__}: "
                        f"{str(e).rstrip('.')}. Fix: check task.hub_path and the options hub_config "
                        f"(e.g. 'xquad.{{lang}}') and hub_splits, and the network; offline, use local "
                        f"SQuAD JSON files (format: squad with files: ...).") from e
    missing = {"context", "question", "answers"} - set(ds.column_names)
    if missing:
        raise DataError(f"{what} has no column(s) {sorted(missing)}; found {ds.column_names}. Fix: use a "
                        f"dataset with SQuAD columns (id, context, question, answers).")
    out = []
    for i, row in enumerate(ds):
        ans = row["answers"]
        if isinstance(ans, dict):  # the usual {"text": [...], "answer_start": [...]} struct
            ans = [{"text": t, "answer_start": s}
                   for t, s in zip(ans.get("text", []), ans.get("answer_start", []))]
        texts, starts = _answers(ans, row["context"], f"{what}, row {i}")
        out.append(QaExample(str(row.get("id", i)), row["context"], row["question"], texts, starts))
    return out


# ------------------------------------------------------------------------------------------- synthetic
# Relation -> per language (statement, question). Answers are names, cities, organisations and years:
# the same strings in every language, so a fact and its answer are identical across languages.
_TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "en": {"live": ("{p} lives in {a}.", "Where does {p} live?"),
           "work": ("{p} works for {a}.", "Who does {p} work for?"),
           "born": ("{p} was born in {a}.", "When was {p} born?"),
           "friend": ("{p} is a friend of {a}.", "Who is {p} a friend of?")},
    "de": {"live": ("{p} wohnt in {a}.", "Wo wohnt {p}?"),
           "work": ("{p} arbeitet für {a}.", "Für wen arbeitet {p}?"),
           "born": ("{p} wurde {a} geboren.", "Wann wurde {p} geboren?"),
           "friend": ("{p} ist mit {a} befreundet.", "Mit wem ist {p} befreundet?")},
    "es": {"live": ("{p} vive en {a}.", "¿Dónde vive {p}?"),
           "work": ("{p} trabaja para {a}.", "¿Para quién trabaja {p}?"),
           "born": ("{p} nació en {a}.", "¿Cuándo nació {p}?"),
           "friend": ("{p} es amigo de {a}.", "¿De quién es amigo {p}?")},
    "fr": {"live": ("{p} habite à {a}.", "Où habite {p} ?"),
           "work": ("{p} travaille pour {a}.", "Pour qui travaille {p} ?"),
           "born": ("{p} est né en {a}.", "En quelle année est né {p} ?"),
           "friend": ("{p} est un ami de {a}.", "De qui {p} est-il l'ami ?")},
    "it": {"live": ("{p} abita a {a}.", "Dove abita {p}?"),
           "work": ("{p} lavora per {a}.", "Per chi lavora {p}?"),
           "born": ("{p} è nato nel {a}.", "Quando è nato {p}?"),
           "friend": ("{p} è amico di {a}.", "Di chi è amico {p}?")},
    "pt": {"live": ("{p} mora em {a}.", "Onde mora {p}?"),
           "work": ("{p} trabalha para {a}.", "Para quem trabalha {p}?"),
           "born": ("{p} nasceu em {a}.", "Quando nasceu {p}?"),
           "friend": ("{p} é amigo de {a}.", "De quem é amigo {p}?")},
    "nl": {"live": ("{p} woont in {a}.", "Waar woont {p}?"),
           "work": ("{p} werkt voor {a}.", "Voor wie werkt {p}?"),
           "born": ("{p} is geboren in {a}.", "Wanneer is {p} geboren?"),
           "friend": ("{p} is bevriend met {a}.", "Met wie is {p} bevriend?")},
}
#: Language codes :func:`synthetic_qa` can write.
SYNTHETIC_QA_LANGS: tuple[str, ...] = tuple(_TEMPLATES)

_FIRST = ("Ana", "Marta", "Luka", "Tomas", "Ines", "Jonas", "Sara", "Pavel", "Lea", "Omar", "Nadia", "Kenji",
          "Elif", "Bruno", "Rosa", "Ivan", "Maya", "Felix", "Nora", "Amir")
_SUR = ("Kovacs", "Novak", "Berg", "Silva", "Haddad", "Ivanova", "Lindqvist", "Moreau", "Okafor", "Tanaka",
        "Costa", "Weber", "Rossi", "Dubois", "Jensen", "Petrov")
_CITY = ("Valdora", "Kerstad", "Lisara", "Oberhain", "Tolmira", "Brenmouth", "Astoria", "Kalmor",
         "Porto Verde", "San Lumo", "Nordhavn", "Villamar", "Monte Sarro", "Bad Elsing")
_ORG = ("Banco Norte", "Helix", "Telecor", "Aurora Media", "Vesta Holding", "Orion Systems", "Meridian",
        "Solvex Pharma", "Grupo Lumen", "Radio Kalmor", "Liga Sur", "Editora Alba")
_SPLIT_SEED = {"train": 0, "dev": 1, "validation": 1, "test": 2}


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_SUR)}"


def _facts(rng: random.Random) -> tuple[list[tuple[str, str, str]], int]:
    """(subject, relation, answer) facts about two people, shuffled, and the index of the one asked about."""
    people = [_person(rng), _person(rng)]
    while people[1] == people[0]:
        people[1] = _person(rng)
    values = {"live": rng.sample(_CITY, 2), "work": rng.sample(_ORG, 2),
              "born": [str(y) for y in rng.sample(range(1930, 2010), 2)], "friend": []}
    facts = []
    for k, p in enumerate(people):
        for rel in rng.sample(sorted(values), 2):
            if rel == "friend":
                friend = _person(rng)
                while friend in people:
                    friend = _person(rng)
                facts.append((p, rel, friend))
            else:
                facts.append((p, rel, values[rel][k]))
    rng.shuffle(facts)
    return facts, rng.randrange(len(facts))


def synthetic_qa(langs: Sequence[str] | str, split: str, n: int, seed: int = 0) -> dict[str, list[QaExample]]:
    """``n`` synthetic questions per language, deterministic in ``(seed, split)`` and parallel across
    languages (the i-th question holds the same facts and answer in every language). Each context states
    four facts about two people (where they live, whom they work for, when they were born, whose friend
    they are); the question asks for one of them. ``split`` is train, dev (alias validation) or test."""
    langs = [langs] if isinstance(langs, str) else list(langs)
    unknown = [lang for lang in langs if lang not in _TEMPLATES]
    if unknown:
        raise DataError(f"synthetic QA has no language(s) {unknown}. Fix: use languages among "
                        f"{', '.join(SYNTHETIC_QA_LANGS)}, or real data (format: squad or hub).")
    if split not in _SPLIT_SEED:
        raise DataError(f"unknown synthetic split {split!r}. Fix: use train, dev (alias validation) or test.")
    if not isinstance(n, int) or n < 0:
        raise DataError(f"synthetic_qa needs a non-negative question count n, got {n!r}")
    rng = random.Random(f"synthetic-qa/{seed}/{_SPLIT_SEED[split]}")
    draws = [_facts(rng) for _ in range(n)]
    out: dict[str, list[QaExample]] = {}
    for lang in langs:
        rows = []
        for i, (facts, asked) in enumerate(draws):
            context, start = "", 0
            for k, (p, rel, answer) in enumerate(facts):
                sentence = _TEMPLATES[lang][rel][0].format(p=p, a=answer)
                if k == asked:
                    start = len(context) + sentence.index(answer, len(p))
                context += sentence + " "
            p, rel, answer = facts[asked]
            question = _TEMPLATES[lang][rel][1].format(p=p)
            rows.append(QaExample(f"synthetic-{split}-{i}", context.strip(), question, (answer,), (start,)))
        out[lang] = rows
    return out
