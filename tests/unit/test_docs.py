import pathlib

ROOT = pathlib.Path(__file__).parents[2]


def test_ci_runs_the_test_command_the_readme_gives():
    readme = (ROOT / 'README.rst').read_text().splitlines()
    ci = (ROOT / '.ci' / 'run').read_text().splitlines()
    section = readme[readme.index('Test'):]
    block = [line.strip() for line in section if line.startswith('    ')]
    for command in block[:4]:  # install, venv, pip, test command
        if command.startswith('apt-get'):
            continue
        assert command in [line.strip() for line in ci], command
    assert ci[-1].strip() == block[3]
