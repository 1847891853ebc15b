// The native per-file road: one plain little-endian DICOM file de-identified from its bytes
// with a policy table compiled once in Python (python/medveil/engine/native.py).
//
// The table holds, per standard tag and VR, what the shared decision layer
// (python/medveil/engine/decide.py) answers for an empty and a non-empty value when that
// answer does not depend on the value; value-dependent answers are either computed here
// (UID remapping by HMAC-SHA256, the only one that changes in every file) or looked up in a
// cache of answers Python computed for the same value and the same patient identity. Anything
// else (a cache miss, a rule not ported, an unusual encoding or any structural doubt) ends
// the file with a fixed reason, and Python's raw-byte engine takes it: fallback is always
// safe, guessing never is. The output is meant to be byte for byte the raw-byte engine's.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace medveil::fastpath {

enum Kind : std::uint8_t {
    kFallback = 0,  // not covered: the file goes to Python (reason in Variant::reason)
    kKeep = 1,      // copied as it is (a sequence: its items walked with the table)
    kRemove = 2,
    kEmpty = 3,     // present with no value (a sequence: no items)
    kPut = 4,       // Variant::value replaces the value (already padded)
    kUid = 5,       // each UID remapped under the secret unless well known
    kCache = 6,     // looked up in the value cache (the patient's identity in the key)
};

struct Variant {
    std::uint8_t kind = kFallback;
    std::int32_t report = -1;          // action id reported (-1: none)
    std::vector<std::int32_t> notes;   // action ids reported before it
    std::string value;                 // kPut
    std::string reason;                // kFallback
};

struct VrEntry {
    std::uint16_t vr = 0;      // two VR bytes, little-endian
    bool use_empty = false;    // the answer depends on whether the value is empty
    std::int32_t id = -1;      // entry id (cache keys, misses)
    Variant v[2];              // [non-empty, empty]
};

struct TagEntry {
    std::uint16_t plain_vr = 0;  // kept as it is, unreported, when written with this VR
    std::uint16_t dict_vr = 0;   // the VR an Implicit VR file gives it
    bool code_meaning = false;   // judged with its item's coding scheme
    std::vector<VrEntry> vrs;
};

struct CacheValue {
    std::uint8_t kind = kFallback;  // kKeep, kRemove, kEmpty or kPut
    std::int32_t report = -1;
    std::vector<std::int32_t> notes;
    std::string value;
};

struct MetaTemplate {
    std::string pre, post;
    std::vector<std::pair<std::uint32_t, std::int32_t>> taken;  // (tag, action) under "meta"
};

struct Table {
    std::unordered_map<std::uint32_t, TagEntry> tags;
    std::vector<std::uint32_t> sq_tags;  // sorted: sequences in Implicit VR
    std::string secret;
    std::unordered_set<std::string> well_known;  // pydicom's UID dictionary
    std::vector<std::uint32_t> term_tags;        // the identity's top-level elements
    std::vector<std::uint32_t> catalog_tags;
    std::unordered_set<std::string> charsets;    // Specific Character Set values covered
    std::unordered_map<std::string, int> syntaxes;  // 0 explicit, 1 implicit, 2 encapsulated
    std::int32_t private_report = -1;  // every private element removed with this action; -1: fallback
    std::int32_t next_id = 0;

    // Filled by Python between batches; read by the batch threads.
    mutable std::shared_mutex mu;
    std::unordered_map<std::string, CacheValue> cache;
    std::unordered_map<std::string, MetaTemplate> metas;
    std::vector<std::vector<std::pair<std::uint32_t, std::string>>> marks;
};

enum Status : int { kOk = 0, kDeclined = 1, kMiss = 2 };

struct Miss {
    std::int32_t entry;
    std::int32_t empty;
    std::int64_t vstart, vend;
};

struct Result {
    int status = kDeclined;
    std::string reason;
    bool implicit = false;
    std::string head, tail;        // output before and after the pixel value
    std::int64_t pix_start = -1, pix_end = -1;  // pixel value in the pixel source
    bool pix_replaced = false;     // the pixel source is the replacement, not the input
    std::array<std::uint8_t, 32> sha{};
    std::vector<std::int64_t> taken;  // (path index, tag, action) triples
    std::vector<std::string> paths;
    std::vector<std::pair<std::uint32_t, std::pair<std::uint16_t, std::string>>> catalog;
    std::vector<Miss> misses;
    std::array<std::uint8_t, 32> fingerprint{};
    std::vector<std::int64_t> top;   // (tag, vr, start, vstart, length, end) per top element
    std::vector<std::int64_t> meta;  // same, for the file meta
    std::string meta_key;
};

struct Input {
    const std::uint8_t* data = nullptr;
    std::size_t size = 0;
    int marks = -1;                          // mark set id; -1: none (a first pass)
    const std::uint8_t* pixels = nullptr;    // replacement pixel value, or null
    std::size_t pixels_size = 0;
    bool build = true;                       // encode the output (else decide only)
    bool hash = true;                        // with build: the output's SHA-256 too
};

// De-identifies one file; never throws for a bad input (the result says why not).
void process(const Table& table, const Input& in, Result& out);

// process() for each input on up to `threads` threads (0 or 1: this thread).
void process_batch(const Table& table, const std::vector<Input>& inputs,
                   std::vector<Result>& out, int threads);

// The key of the file meta's template: (tag, length, value) of each meta element but the
// group length and the SOP Instance UID, then whether the input had a non-empty one.
std::string meta_key(const std::uint8_t* data, std::size_t size,
                     const std::vector<std::int64_t>& meta_rows);

}  // namespace medveil::fastpath
