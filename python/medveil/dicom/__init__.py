"""DICOM reading and writing: Part 10 I/O, element peeking, identity keyword lists."""
