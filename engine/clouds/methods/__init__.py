"""The methods of single-image cloud removal: the catalogue (:mod:`.catalogue`: automatic, the classic
fill, the networks), the fill itself (:mod:`.fill`, :mod:`.classic`) and the automatic choice
(:mod:`.selection`)."""
