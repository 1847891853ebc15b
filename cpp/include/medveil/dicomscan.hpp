// DICOM element scanner: where each element of a little-endian data set starts and ends.
//
// It reads element headers only (never values) and reports them as flat rows in document
// order, so the raw-byte engine (python/medveil/rawengine.py) can decide each element
// without building Python objects for the scan itself. It implements exactly the rules of
// that engine's former Python scanner; any input it does not cover stops the scan with a
// fixed reason (no values in it), and the caller hands the file to the Dataset engine.
//
// Rows (kScanColumns int64 each):
//   element: tag, vr, start, value start, length field, end, items (-1 if no sequence), depth
//   item:    -1, undefined (0/1), start, end, elements, 0, 0, depth
// An element's items follow its row, each item row followed by its own elements; depth is
// 0 for the data set's own elements and one more inside each sequence. `vr` is
// the two VR bytes as a little-endian uint16, or 0 where the encoding is implicit (the
// caller looks the VR up in the data dictionary).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace medveil {

constexpr std::size_t kScanColumns = 8;

struct ScanResult {
    std::vector<std::int64_t> rows;  // kScanColumns per row
    std::size_t end = 0;             // where the scan stopped
    std::string error;               // empty when the scan succeeded
};

// Scans [pos, end) of data[0, size). `implicit` selects Implicit VR Little Endian, where
// the tags of `sq_tags` (sorted ascending) are sequences and an undefined length marks
// one too. Never reads outside data[0, size).
void scan_elements(const std::uint8_t* data, std::size_t size, std::size_t pos,
                   std::size_t end, bool implicit, const std::uint32_t* sq_tags,
                   std::size_t n_sq_tags, ScanResult& out);

}  // namespace medveil
