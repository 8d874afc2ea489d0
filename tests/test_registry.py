import pytest

import talkingface
from talkingface.errors import RegistryError
from talkingface.registry import Registry


def test_register_alias_and_case_insensitive_lookup():
    registry = Registry("thing")

    @registry.register("DINet", aliases=("dinet_v1",))
    class Thing:
        pass

    assert registry.get("dinet") is Thing
    assert registry.get("DINET") is Thing
    assert registry.get("Dinet_V1") is Thing
    assert registry.canonical("dinet_v1") == "dinet"
    assert Thing.registered_name == "dinet"
    assert registry.names() == ["dinet"]
    assert "DiNeT" in registry and "other" not in registry


def test_unknown_name_lists_closest_names():
    registry = Registry("model")
    for name in ("dinet", "lawdnet", "videoretalking"):
        registry.add(name, type(name, (), {}))
    with pytest.raises(RegistryError) as info:
        registry.get("dinett")
    message = str(info.value)
    assert "unknown model 'dinett'" in message
    assert "did you mean 'dinet'" in message
    assert "registered: dinet, lawdnet, videoretalking" in message


def test_duplicate_name_needs_override():
    registry = Registry("model")
    first, second = type("A", (), {}), type("B", (), {})
    registry.add("a", first)
    registry.add("a", first)  # same object again is fine (module re-import)
    with pytest.raises(RegistryError, match="already registered"):
        registry.add("A", second)
    registry.add("a", second, override=True)
    assert registry.get("a") is second


def test_public_listing_functions_are_sorted_and_include_plugins():
    assert talkingface.list_models() == sorted(talkingface.list_models())
    assert "example_inpainter" in talkingface.list_models()
    assert "example_shapes" in talkingface.list_datasets()
    assert "psnr" in talkingface.list_metrics()
    assert talkingface.MODELS.get("example").registered_name == "example_inpainter"


def test_build_model_returns_talkingface_model_with_layered_defaults():
    model = talkingface.build_model("Example", {"example_inpainter": {"channels": 8}})
    assert isinstance(model, talkingface.TalkingFaceModel)
    assert model.config["example_inpainter.channels"] == 8
    assert model.config["example_inpainter.lr"] == 2e-3  # from the model's defaults
    assert model.config["train.batch_size"] == 8  # from overall.yaml


def test_plugins_config_key_imports_modules():
    config = talkingface.load_config("example_killed", None, config={"plugins": ["killer_plugin"]})
    assert config["model"] == "example_killed"
    with pytest.raises(RegistryError, match="cannot import plugin module 'no_such_module_xyz'"):
        talkingface.load_config(config={"plugins": ["no_such_module_xyz"]})


def test_a_plugin_may_look_up_names_while_it_is_imported(tmp_path, monkeypatch):
    import threading

    from talkingface import registry

    (tmp_path / "reentrant_plugin.py").write_text("import talkingface\nSEEN = talkingface.list_models()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "BUILTIN_PLUGIN_MODULES", (*registry.BUILTIN_PLUGIN_MODULES, "reentrant_plugin"))
    worker = threading.Thread(target=registry.discover_plugins, kwargs={"force": True}, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "plugin discovery deadlocked on a lookup made during a plugin import"
    import reentrant_plugin

    assert "example_inpainter" in reentrant_plugin.SEEN
