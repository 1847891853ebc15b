// Aho-Corasick over bytes with a dense transition table over byte classes: only the bytes
// that occur in some pattern get a class of their own (a term set uses a few dozen), so the
// table stays small enough to build per file and to sit in cache during the scan.
#include "medveil/termsearch.hpp"

#include <algorithm>
#include <deque>
#include <limits>
#include <stdexcept>

namespace medveil::termsearch {
namespace {

// [a-z0-9]: the word bytes of the folded byte haystacks (upper case is folded away before).
inline bool word_byte(std::uint8_t b) {
    return (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9');
}

inline bool ascii_alnum(std::uint32_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// The code point starting at byte i of valid UTF-8 (cut short at n: reads no further).
std::uint32_t decode_at(const std::uint8_t* p, std::size_t n, std::size_t i) {
    const std::uint8_t b0 = p[i];
    if (b0 < 0x80) return b0;
    auto cont = [&](std::size_t k) -> std::uint32_t {
        return i + k < n ? static_cast<std::uint32_t>(p[i + k] & 0x3F) : 0u;
    };
    if ((b0 & 0xE0) == 0xC0) return (static_cast<std::uint32_t>(b0 & 0x1F) << 6) | cont(1);
    if ((b0 & 0xF0) == 0xE0)
        return (static_cast<std::uint32_t>(b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2);
    return (static_cast<std::uint32_t>(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) |
           cont(3);
}

}  // namespace

Automaton::Automaton(const std::vector<std::vector<std::uint8_t>>& patterns, Mode mode,
                     WordPredicate is_word)
    : mode_(mode), is_word_(is_word) {
    if (patterns.size() >= std::numeric_limits<std::int32_t>::max())
        throw std::length_error("too many patterns");
    // Byte classes: 0 for every byte no pattern holds (it always leads back to the root),
    // 1.. for the others. With all 256 bytes in use class numbers run out: one class per
    // byte then (class 0 is byte 0, a real class; the root's fallback still works).
    bool seen[256] = {};
    std::uint32_t distinct = 0;
    for (const auto& p : patterns)
        for (std::uint8_t b : p)
            if (!seen[b]) {
                seen[b] = true;
                ++distinct;
            }
    if (distinct >= 256) {
        for (int b = 0; b < 256; ++b) cls_[b] = static_cast<std::uint8_t>(b);
        nclasses_ = 256;
    } else {
        std::uint32_t next = 1;
        for (int b = 0; b < 256; ++b)
            if (seen[b]) cls_[b] = static_cast<std::uint8_t>(next++);
        nclasses_ = next;
    }

    // The table has at most (1 + total pattern length) rows: refuse what would not fit in
    // kMaxTableEntries rather than allocate it (the caller then uses another matcher).
    std::size_t total = 1;
    for (const auto& p : patterns) total += p.size();
    if (total > kMaxTableEntries / nclasses_)
        throw std::length_error("term set too large for the dense automaton");

    // The trie, in the dense table (0 = no child: the root is nobody's child).
    const std::uint32_t C = nclasses_;
    delta_.assign(C, 0);
    own_.assign(1, -1);
    pat_len_.resize(patterns.size());
    for (std::size_t i = 0; i < patterns.size(); ++i) {
        const auto& p = patterns[i];
        pat_len_[i] = static_cast<std::uint32_t>(p.size());
        if (p.empty()) continue;
        std::uint32_t st = 0;
        for (std::uint8_t b : p) {
            const std::uint32_t c = cls_[b];
            std::uint32_t nxt = delta_[st * C + c];
            if (nxt == 0) {
                nxt = static_cast<std::uint32_t>(own_.size());
                own_.push_back(-1);
                delta_.resize(delta_.size() + C, 0);
                delta_[st * C + c] = nxt;
            }
            st = nxt;
        }
        own_[st] = static_cast<std::int32_t>(i);  // a repeated pattern: the last index wins
    }
    nstates_ = own_.size();

    // Failure links breadth first; missing transitions become the failure state's.
    std::vector<std::uint32_t> fail(nstates_, 0);
    first_out_.assign(nstates_, 0);
    dict_link_.assign(nstates_, 0);
    std::deque<std::uint32_t> queue;
    for (std::uint32_t c = 0; c < C; ++c) {
        const std::uint32_t child = delta_[c];
        if (child != 0) queue.push_back(child);  // depth 1: fails to the root
    }
    while (!queue.empty()) {
        const std::uint32_t st = queue.front();
        queue.pop_front();
        dict_link_[st] = first_out_[fail[st]];
        first_out_[st] = own_[st] >= 0 ? st : dict_link_[st];
        for (std::uint32_t c = 0; c < C; ++c) {
            std::uint32_t& slot = delta_[st * C + c];
            const std::uint32_t f = delta_[fail[st] * C + c];
            // A state's row holds only its trie children until the state is dequeued.
            if (slot != 0) {
                fail[slot] = f;
                queue.push_back(slot);
            } else {
                slot = f;
            }
        }
    }

    // The scan's table: each entry the next state's row offset (state * C) shifted left
    // by one, its low bit set when that state ends a pattern (first_out_ nonzero). The
    // scan then does one load per byte and no multiply; it fits: nstates * C is at most
    // kMaxTableEntries (2^23), so the entry is below 2^24.
    step_.resize(delta_.size());
    for (std::size_t k = 0; k < delta_.size(); ++k) {
        const std::uint32_t nxt = delta_[k];
        step_[k] = ((nxt * C) << 1) | (first_out_[nxt] != 0 ? 1u : 0u);
    }
    std::vector<std::uint32_t>().swap(delta_);  // only the build reads it: freed (cached automata)
}

bool Automaton::boundaries_ok(const std::uint8_t* hay, std::size_t n, std::size_t s,
                              std::size_t e) const {
    switch (mode_) {
        case Mode::kSubstring:
            return true;
        case Mode::kWord:
            return !(s > 0 && word_byte(hay[s - 1])) && !(e < n && word_byte(hay[e]));
        case Mode::kWordUtf16:
            return !(s >= 2 && word_byte(hay[s - 2]) && hay[s - 1] == 0) &&
                   !(e + 1 < n && word_byte(hay[e]) && hay[e + 1] == 0);
        case Mode::kWordUtf8: {
            auto word = [&](std::uint32_t c) {
                return c < 0x80 ? ascii_alnum(c) : (is_word_ != nullptr && is_word_(c));
            };
            if (s > 0) {
                std::size_t i = s - 1;
                while (i > 0 && (hay[i] & 0xC0) == 0x80 && s - i < 4) --i;
                if (word(decode_at(hay, n, i))) return false;
            }
            return !(e < n && word(decode_at(hay, n, e)));
        }
    }
    return true;
}

template <bool kStopAtFirst>
void Automaton::run(const std::uint8_t* hay, std::size_t n, std::vector<Match>& out) const {
    if (nstates_ <= 1) return;
    const std::uint32_t C = nclasses_;
    const std::uint32_t* step = step_.data();
    const std::uint32_t* first = first_out_.data();
    std::uint32_t at = 0;  // the current state's step_ entry (row offset << 1 | ends a pattern)
    for (std::size_t i = 0; i < n; ++i) {
        at = step[(at >> 1) + cls_[hay[i]]];
        if ((at & 1u) == 0) continue;  // the usual byte: no pattern ends here
        const std::uint32_t st = (at >> 1) / C;
        for (std::uint32_t o = first[st]; o != 0; o = dict_link_[o]) {
            const auto pat = static_cast<std::uint32_t>(own_[o]);
            const std::size_t e = i + 1;
            const std::size_t s = e - pat_len_[pat];
            if (!boundaries_ok(hay, n, s, e)) continue;
            out.push_back(Match{s, e, pat});
            if (kStopAtFirst) return;
        }
    }
}

std::vector<Match> Automaton::find(const std::uint8_t* hay, std::size_t n) const {
    std::vector<Match> out;
    run<false>(hay, n, out);
    auto by_start = [](const Match& a, const Match& b) {
        if (a.start != b.start) return a.start < b.start;
        if (a.end != b.end) return a.end < b.end;
        return a.pattern < b.pattern;
    };
    std::sort(out.begin(), out.end(), by_start);
    if (mode_ != Mode::kSubstring && !out.empty()) {
        // One per start: the longest (the last of its start after the sort).
        std::size_t w = 0;
        for (std::size_t r = 0; r < out.size(); ++r) {
            if (r + 1 < out.size() && out[r + 1].start == out[r].start) continue;
            out[w++] = out[r];
        }
        out.resize(w);
    }
    return out;
}

bool Automaton::any(const std::uint8_t* hay, std::size_t n) const {
    std::vector<Match> out;
    run<true>(hay, n, out);
    return !out.empty();
}

}  // namespace medveil::termsearch
