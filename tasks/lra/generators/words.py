"""Word lists for the Text and Retrieval generators (plain English, so generated files read naturally)."""

POSITIVE_WORDS = (
    "brilliant", "superb", "moving", "delightful", "gripping", "charming", "masterful", "stunning",
    "witty", "heartfelt", "memorable", "excellent",
)
NEGATIVE_WORDS = (
    "dreadful", "tedious", "clumsy", "bland", "awful", "lifeless", "shallow", "forgettable",
    "boring", "pointless", "terrible", "messy",
)
REVIEW_FILLER = (
    "the", "film", "movie", "plot", "story", "actor", "actress", "scene", "scenes", "director", "camera",
    "music", "score", "ending", "opening", "character", "characters", "dialogue", "script", "cast", "role",
    "and", "with", "was", "is", "of", "a", "an", "in", "on", "at", "it", "this", "that", "then", "when",
    "while", "after", "before", "its", "their", "his", "her", "which", "as", "for", "from", "by", "about",
    "some", "every", "most", "first", "second", "last", "long", "short", "time", "year", "night", "city",
    "house", "family", "friend", "war", "love", "road", "town", "sequel", "version", "screen", "shot",
)
TOPIC_WORDS = {
    "parsing": ("parser", "treebank", "grammar", "constituent", "derivation", "dependency"),
    "translation": ("bilingual", "alignment", "decoder", "reordering", "phrasal", "transfer"),
    "speech": ("acoustic", "phoneme", "prosody", "recogniser", "spectral", "utterance"),
    "semantics": ("predicate", "frame", "argument", "entailment", "logical", "compositional"),
    "discourse": ("coherence", "rhetorical", "anaphora", "referent", "dialogue", "centering"),
    "retrieval": ("query", "index", "ranking", "relevance", "collection", "search"),
    "morphology": ("stem", "affix", "inflection", "lemma", "segmentation", "compound"),
    "generation": ("realisation", "planner", "template", "surface", "content", "referring"),
}
PAPER_FILLER = (
    "we", "the", "a", "of", "in", "to", "and", "for", "is", "are", "this", "that", "our", "paper", "method",
    "model", "approach", "results", "data", "corpus", "evaluation", "system", "task", "show", "present",
    "propose", "using", "based", "on", "with", "by", "from", "than", "previous", "work", "new", "set",
    "features", "performance", "experiments", "accuracy", "baseline", "training", "test", "english", "language",
    "annotated", "large", "small", "two", "three", "each", "table", "section", "figure", "describe",
)
