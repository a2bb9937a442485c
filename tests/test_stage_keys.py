"""Digests behind the stage keys (sensi_edge/stage_keys.py): content, not spelling."""
from sensi_edge.recipe import Recipe
from sensi_edge.stage_keys import of_folder, of_recipe


def test_a_recipe_is_one_key_however_its_numbers_are_spelled():
    assert of_recipe(Recipe(epochs=2)) == of_recipe(Recipe(epochs=2.0))
    assert of_recipe(Recipe(epochs=2)) != of_recipe(Recipe(epochs=3))
    assert of_recipe(Recipe(seed=1)) != of_recipe(Recipe(seed=2))


def test_a_folder_is_keyed_by_its_files_not_by_hidden_tool_state(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.bin").write_bytes(b"\x00\x01")
    key = of_folder(tmp_path)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "index").write_text("changes on every git status")
    assert of_folder(tmp_path) == key
    (tmp_path / "sub" / "w.bin").write_bytes(b"\x00\x02")
    assert of_folder(tmp_path) != key
