"""The images the chart runs and the recipes that build them agree:
deploy/images/components (the one list build.sh builds from) names every
image of ours the chart renders, with the same registry, repo and tag
defaults; each Dockerfile is what `build.sh --dockerfiles` writes from the
list; bad arguments to build.sh get a one-line error."""

from __future__ import annotations

import subprocess
import unittest

import chart as c

BUILD = c.REPO / "deploy" / "images" / "build.sh"


def build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUILD), *args], capture_output=True, text=True, timeout=60, check=False
    )


def listed_images() -> dict[str, str]:
    """component -> image reference, from `build.sh --list`."""
    out = build("--list")
    if out.returncode != 0:
        raise AssertionError(out.stderr)
    return {line.split()[0]: line.split()[1] for line in out.stdout.splitlines()}


def rendered_images(values: dict) -> set[str]:
    images = set()
    for obj in c.workloads(c.render(values)).values():
        for container in c.pod_spec(obj)["containers"]:
            images.add(container["image"])
    return images


class Images(unittest.TestCase):
    def test_every_image_of_ours_in_the_chart_is_built_by_the_script(self) -> None:
        listed = listed_images()
        self.assertEqual(set(listed), c.OUR_COMPONENTS | {"store"})
        # Everything on, HA agents included: each image of ours the chart
        # names is one build.sh makes, under the same name.
        values = {"agents": {"ha": {"enabled": True}}}
        ours = {i for i in rendered_images(values) if "/sig-storage/" not in i}
        self.assertEqual(len(ours), len(c.OUR_COMPONENTS), ours)
        self.assertLessEqual(ours, set(listed.values()))

    def test_registry_and_tag_follow_the_arguments(self) -> None:
        out = build("--list", "--registry", "registry.example:5000", "--tag", "1.2.3", "--only", "io-engine")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.split()[1], "registry.example:5000/mayastor/io-engine:1.2.3")

    def test_dockerfiles_match_the_list(self) -> None:
        out = build("--check-dockerfiles")
        self.assertEqual(out.returncode, 0, out.stderr)
        for component in listed_images():
            text = (c.REPO / "deploy" / "images" / component / "Dockerfile").read_text()
            self.assertIn("FROM debian:bookworm-slim", text)
            self.assertIn("ENTRYPOINT [", text)

    def test_bad_arguments_are_refused_in_one_line(self) -> None:
        for args, message in [
            (["--profile", "fast"], "--profile must be release or debug"),
            (["--only", "io-engine,nope"], "unknown component 'nope'"),
            (["--frobnicate"], "unknown argument '--frobnicate'"),
            (["--output-dir", "/nonexistent-x", "--no-import", "--registry", "Bad Name"], "bad --registry"),
        ]:
            out = build(*args)
            self.assertNotEqual(out.returncode, 0, args)
            self.assertIn(message, out.stderr)
            self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)


if __name__ == "__main__":
    unittest.main()
