// The strict check's row rules (python/medveil/dicom/strict.py, _check_rows_python): what
// the element scanner lets through that still makes a file structurally damaged. The same
// checks in the same order, so the first finding (its reason and byte offset) is the one
// the Python reference names.
//
// `rows` are the scanner's rows (cpp/include/medveil/dicomscan.hpp, kScanColumns each) of
// one data set in data[0, size). Explicit VR: text and long-length VRs are read from the
// rows' VR codes. Implicit VR: the caller gives, per row, whether its dictionary VR is a
// text VR (`text`) and whether it is an undefined-length row the dictionary does not
// make a sequence (`bad_undefined`); both are required then.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace medveil {

struct RowsVerdict {
    std::string error;    // empty: no finding
    std::int64_t at = 0;  // the byte offset the finding names
};

// Fills `out` with the first finding (or leaves it empty). Throws std::invalid_argument
// when a row points outside data[0, size) (never so for the scanner's own rows): the
// caller then runs the Python reference. Never reads outside data[0, size).
void check_rows(const std::uint8_t* data, std::size_t size, const std::int64_t* rows,
                std::size_t n, bool implicit, const std::uint8_t* text,
                const std::uint8_t* bad_undefined, RowsVerdict& out);

// The file meta's extent (python/medveil/dicom/strict.py, dataset_offset_python): where
// group 0002 starts (after the preamble and DICM, or at 0), where the data set starts, and
// the Transfer Syntax UID's bytes (trailing NULs and spaces cut). The same checks in the
// same order, so the same first finding (reason, byte offset) as the Python reference.
struct MetaExtent {
    std::size_t start = 0;       // first byte of the file meta (0 without one)
    std::size_t pos = 0;         // first byte of the data set
    bool has_syntax = false;     // a (0002,0010) element was read
    std::size_t ts_start = 0;    // its value bytes [ts_start, ts_end), trimmed
    std::size_t ts_end = 0;
    std::string error;           // empty: no finding
    std::int64_t at = 0;         // the byte offset the finding names
};

// Never reads outside data[0, size).
void meta_extent(const std::uint8_t* data, std::size_t size, MetaExtent& out);

}  // namespace medveil
