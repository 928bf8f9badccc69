"""The models file: the traps YAML sets for operators are caught with one clear line (issue 13)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings
from gateway.registry import load_registry


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return load_registry(load_settings({"MODELS_FILE": str(path), "BUILTIN_MODELS": "false"}))


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"MODELS_FILE {tmp_path / 'models.yaml'}: ")
    return message.split(": ", 1)[1]


def test_octal_looking_flags_are_refused_not_read_as_another_number(tmp_path):
    message = error_of(tmp_path, "models:\n  a:\n    space: a/b\n    flags: 012\n")
    assert message.startswith("models.a.flags: must be two digits")
    assert "YAML read 012 as the number 10" in message and 'flags: "41"' in message


@pytest.mark.parametrize("written, flags", [("41", "41"), ("01", "01"), ("00", "00"), ('"52"', "52")])
def test_unquoted_two_digit_flags_keep_their_digits(tmp_path, written, flags):
    [model] = load(tmp_path, f"models:\n  a:\n    space: a/b\n    flags: {written}\n")
    assert model.flags == flags


def test_a_duplicated_model_id_is_refused_with_its_line(tmp_path):
    message = error_of(tmp_path, "models:\n  a:\n    space: a/b\n  a:\n    space: c/d\n")
    assert message == ("invalid YAML at line 4, column 3: duplicated key 'a' "
                       "(the later entry would silently replace the first)")


def test_a_duplicated_field_is_refused_too(tmp_path):
    assert "duplicated key 'space'" in error_of(tmp_path, "models:\n  a:\n    space: a/b\n    space: c/d\n")


def test_a_key_glued_to_its_value_says_to_add_a_blank(tmp_path):
    message = error_of(tmp_path, "models:\n  a:\n    space:http://127.0.0.1:7860/\n")
    assert message == ("models.a: 'space:http://127.0.0.1:7860/' is one piece of text to YAML: "
                       "put a blank after the colon (space: ...)")


@pytest.mark.parametrize("page", ["https://huggingface.co/spaces/owner/name", "https://hf.co/spaces/owner/name/"])
def test_a_space_page_url_is_refused_with_the_space_id_to_use(tmp_path, page):
    message = error_of(tmp_path, f"models:\n  a:\n    space: {page}\n")
    assert message.startswith(f"models.a.space: {page} is the Space's web page, not its Gradio app")
    assert "use the Space id 'owner/name'" in message
