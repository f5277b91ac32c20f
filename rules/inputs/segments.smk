# What the rules of rules/segments.smk read and are given: their input functions and
# values (the linter keeps functions out of files with rules).

from genreflow.names import length_label, length_seconds

COMPARE_LENGTHS = [
    length_label(seconds) for seconds in config["segments"]["compare"] or []
]
# The length the main stages already use: its screening results are reused as they are.
MAIN_LENGTH = length_label(config["segments"]["seconds"])


def get_segment_seconds(wildcards):
    return length_seconds(wildcards.length)


def get_segment_rows(wildcards):
    """Every (length, model) of the comparison; the models are the screening selection."""
    return plan.segment_rows(COMPARE_LENGTHS, get_screening_selection())


def get_segment_files(name):
    """Input function: `name` (metrics.json, predictions.csv) of every comparison row; the
    length the main run uses is its screening's."""

    def files(wildcards):
        return [
            plan.segment_file(row, MAIN_LENGTH, name)
            for row in get_segment_rows(wildcards)
        ]

    return files


def segment_targets():
    return [f"{plan.SEGMENTS}/summary.csv"] if COMPARE_LENGTHS else []
