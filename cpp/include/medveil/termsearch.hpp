// Multi-pattern search over bytes for the post-check and `medveil verify`: one Aho-Corasick
// automaton over every learned term, with the word-boundary rules of
// python/medveil/verify/matcher.py (the reference the tests compare against).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace medveil::termsearch {

enum class Mode : std::uint8_t {
    // At each start, the longest pattern with no [a-z0-9] byte right before or after it.
    kWord = 0,
    // The same, with UTF-16-LE code units: a unit "x\0" with x in [a-z0-9] is a word unit.
    kWordUtf16 = 1,
    // Every occurrence of every pattern, overlapping ones included (binary values).
    kSubstring = 2,
    // Text as UTF-8: the code point before/after must not be a word character, as decided by
    // the caller's predicate for non-ASCII code points (Python's str.isalnum minus the
    // scripts written without spaces); offsets are still byte offsets.
    kWordUtf8 = 3,
};

struct Match {
    std::size_t start;
    std::size_t end;
    std::uint32_t pattern;
};

// Whether a non-ASCII code point counts as a word character (kWordUtf8 only).
using WordPredicate = bool (*)(std::uint32_t code_point);

// Transition table entries an automaton may use (4 bytes each): 32 MiB.
constexpr std::size_t kMaxTableEntries = std::size_t{1} << 23;

class Automaton {
public:
    // patterns: each a byte string; an empty pattern never matches. A repeated pattern
    // reports the index of its last occurrence. Throws std::length_error past
    // kMaxTableEntries.
    Automaton(const std::vector<std::vector<std::uint8_t>>& patterns, Mode mode,
              WordPredicate is_word = nullptr);

    // Matches sorted by (start, end, pattern): for the word modes one per start (the longest
    // that respects the boundaries), for kSubstring every occurrence.
    std::vector<Match> find(const std::uint8_t* hay, std::size_t n) const;

    // Whether find() would return anything (stops at the first match).
    bool any(const std::uint8_t* hay, std::size_t n) const;

    std::size_t states() const { return nstates_; }
    Mode mode() const { return mode_; }

private:
    template <bool kStopAtFirst>
    void run(const std::uint8_t* hay, std::size_t n, std::vector<Match>& out) const;
    bool boundaries_ok(const std::uint8_t* hay, std::size_t n, std::size_t s,
                       std::size_t e) const;

    Mode mode_;
    WordPredicate is_word_;
    std::uint32_t nclasses_ = 1;
    std::size_t nstates_ = 1;
    std::uint8_t cls_[256] = {};           // byte -> class (0: no pattern has the byte)
    std::vector<std::uint32_t> delta_;     // state * nclasses_ + class -> next state (build)
    std::vector<std::uint32_t> step_;      // the same, as (next * nclasses_) << 1 | whether
                                           // next ends a pattern: what the scan reads
    std::vector<std::int32_t> own_;        // state -> pattern ending exactly here (-1: none)
    std::vector<std::uint32_t> first_out_; // state -> first state on its suffix chain with a
                                           // pattern (itself included; 0: none)
    std::vector<std::uint32_t> dict_link_; // state -> next such state strictly below it
    std::vector<std::uint32_t> pat_len_;   // pattern index -> length
};

// Lookup tables over scanner VR codes (65536 entries each, nonzero = member).
struct CodeTables {
    const std::uint8_t* number;     // IS, DS: never searched
    const std::uint8_t* binary;     // never decoded as text
    const std::uint8_t* substring;  // binary VRs and codes of no standard VR
    std::size_t sq;
    std::size_t un;
};

// What the post-check searches in a written file read from the scanner's rows
// (postcheck._find_scanned and _masked, mirrored step by step).
struct ValuePlan {
    std::vector<std::int64_t> seg_rows;  // searched rows in file order (-1: the preamble)
    std::vector<std::int64_t> starts;    // their value bytes [start, end)
    std::vector<std::int64_t> ends;
    std::vector<std::uint8_t> hay;       // those bytes folded, all else zero, pixel data cut
    std::vector<std::int64_t> regions;   // (haystack offset, file start, file end) triples
    std::vector<std::int64_t> decode;    // rows also searched decoded (sorted, unique)
    std::vector<std::int64_t> substring_rows;  // searched rows of substring VRs
};

// rows: nrows x 8 scanner rows (medveil/dicomscan.hpp), codes: each row's VR code.
// Throws std::invalid_argument on rows that do not fit the data.
// leaves: element rows searched as values whatever their VR (text in an IS/DS value).
void plan_values(const std::int64_t* rows, std::size_t nrows, const std::int64_t* codes,
                 const std::uint8_t* data, std::size_t n, bool preamble,
                 const CodeTables& tables, const std::int64_t* leaves, std::size_t nleaves,
                 ValuePlan& out);

}  // namespace medveil::termsearch
