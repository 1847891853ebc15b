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

}  // namespace medveil
