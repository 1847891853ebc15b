// Little-endian DICOM byte helpers shared by the element scanner (cpp/src/dicomscan) and the
// native road (cpp/src/fastpath), so that both read lengths and VRs by one set of rules.
#pragma once

#include <cstdint>

namespace medveil::dicom_le {

// The two VR bytes as a little-endian uint16 (how the scanner's rows carry a VR).
constexpr std::uint16_t vr_code(char a, char b) {
    return static_cast<std::uint16_t>(static_cast<std::uint8_t>(a) |
                                      (static_cast<std::uint8_t>(b) << 8));
}

inline std::uint16_t rd16(const std::uint8_t* p) {
    return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}

inline std::uint32_t rd32(const std::uint8_t* p) {
    return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
           (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

// (group << 16) | element of the tag at p.
inline std::uint32_t rd_tag(const std::uint8_t* p) {
    return (static_cast<std::uint32_t>(rd16(p)) << 16) | rd16(p + 2);
}

// VRs written with two reserved bytes and a 4-byte length in Explicit VR (PS3.5 7.1.2), as
// the raw-byte engine's _LONG lists them: UN is not among them, because that engine (and
// so the native road) writes and measures the file meta with this set. The scanner adds
// UN itself (long_vr_or_un).
constexpr bool long_vr(std::uint16_t vr) {
    switch (vr) {
        case vr_code('O', 'B'): case vr_code('O', 'D'): case vr_code('O', 'F'):
        case vr_code('O', 'L'): case vr_code('O', 'V'): case vr_code('O', 'W'):
        case vr_code('S', 'Q'): case vr_code('U', 'C'): case vr_code('U', 'R'):
        case vr_code('U', 'T'): case vr_code('S', 'V'): case vr_code('U', 'V'):
            return true;
        default:
            return false;
    }
}

// long_vr, UN included: how an element header of the data set is read.
constexpr bool long_vr_or_un(std::uint16_t vr) {
    return long_vr(vr) || vr == vr_code('U', 'N');
}

}  // namespace medveil::dicom_le
