"""The DICOM network gateway (`medveil serve`)."""
