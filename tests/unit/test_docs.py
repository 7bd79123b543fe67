import pathlib

ROOT = pathlib.Path(__file__).parents[2]


def test_ci_runs_the_test_command_the_readme_gives():
    readme = (ROOT / 'README.rst').read_text().splitlines()
    ci = (ROOT / '.ci' / 'run').read_text().splitlines()
    section = readme[readme.index('Test'):]
    start = next(i for i, line in enumerate(section) if line.startswith('    '))
    block = []
    for line in section[start:]:
        if not line.startswith('    '):
            break
        block.append(line.strip())
    for command in block:  # install, virtualenv, the test command
        assert command in [line.strip() for line in ci], command
    assert ci[-1].strip() == block[-1]


def readme_situations() -> list[tuple[str, str, str]]:
    """(When, Notified, Story) of each row of "What the agent does when..."."""
    lines = (ROOT / 'README.rst').read_text().splitlines()
    start = lines.index('What the agent does when...')
    rows, cells = [], []
    for line in lines[start:]:
        if line.startswith('   * - ') or (not line.strip() and cells and
                                           len(cells) == 4):
            if len(cells) == 4:
                rows.append(cells)
            cells = [line[7:].strip()] if line.startswith('   * - ') else []
        elif line.startswith('     - '):
            cells.append(line[7:].strip())
        elif line.startswith('       ') and cells:
            cells[-1] += ' ' + line.strip()
        if line.startswith('Why, in a few rules'):
            break
    return [(when, notified, story) for when, _, notified, story in rows[1:]]


def test_the_readme_says_what_the_stories_show():
    import tempfile

    from tests.unit.scenarios import STORIES
    from tests.unit.test_scenarios import replay

    stories = {story.name: story for story in STORIES}
    rows = readme_situations()
    assert len(rows) >= 20
    for when, notified, name in rows:
        story = stories[name]  # every row names a story
        assert story.forward == 'recovery', when  # the default configuration
        expected = () if notified == 'nothing' else tuple(notified.split(', '))
        assert story.expect == expected, when
        with tempfile.TemporaryDirectory() as directory:
            assert replay(story, pathlib.Path(directory)) == expected, when


def test_the_readme_counts_the_story_replays():
    import re

    from tests.unit.scenarios import STORIES
    from tests.unit.test_story_invariance import variants

    text = ' '.join((ROOT / 'README.rst').read_text().split())
    (said,) = re.findall(r'notifications each time \(([\d,]+) replays\)', text)
    assert int(said.replace(',', '')) == sum(
        len(list(variants(story))) for story in STORIES)
