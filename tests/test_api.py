"""The public API in sensi_edge/__init__.py: the same objects the CLI uses."""
import subprocess
import sys


def test_public_names_are_the_pipelines_own_functions():
    import sensi_edge
    from sensi_edge.bench import bench
    from sensi_edge.bundle import bundle
    from sensi_edge.compress import CompressConfig, compress
    from sensi_edge.export import export
    from sensi_edge.tasks.scoring import evaluate_path

    assert sensi_edge.compress is compress and sensi_edge.CompressConfig is CompressConfig
    assert sensi_edge.export is export and sensi_edge.evaluate is evaluate_path
    assert sensi_edge.bench is bench and sensi_edge.bundle is bundle
    assert all(callable(getattr(sensi_edge, name)) for name in sensi_edge.__all__ if name != "__version__")


def test_importing_a_stage_module_first_does_not_shadow_its_function():
    """``import sensi_edge.compress`` sets the package attribute to the module unless the package bound the
    function first: the API must hold whatever the caller imported before."""
    code = ("import sensi_edge.bench, sensi_edge.compress, sensi_edge.export, sensi_edge.bundle, sensi_edge\n"
            "print(all(callable(getattr(sensi_edge, n)) and not hasattr(getattr(sensi_edge, n), '__file__')\n"
            "          for n in ('bench', 'compress', 'export', 'bundle')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=True)
    assert out.stdout.strip() == "True"


def test_importing_the_package_loads_neither_torch_nor_transformers():
    code = ("import sys, sensi_edge, sensi_edge.bundle_runtime, sensi_edge.checks\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
