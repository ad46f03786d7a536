from click.testing import CliRunner

from wharf_local.cli import main


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(main, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == "wharf 0.1.0"
