# What the rules of rules/features.smk read and are given: their input functions and
# values (the linter keeps functions out of files with rules).


def feature_indexes():
    return [plan.feature_index(feature) for feature in FEATURES]
