//! How deeply a body nests objects and arrays, found in one pass over its
//! bytes without parsing it.
//!
//! serde_json refuses values nested deeper than 128 when it builds them, but
//! skips ignored values without a limit, so a body with a few fields read
//! and one nested 50,000 deep would pass the ingress's probe and reach
//! consumers whose parsers give up on it. Counting brackets first gives
//! every body, objects and arrays alike, the same limit.

/// The deepest any relay accepts: serde_json's own recursion limit, so
/// every accepted body can be parsed in full (normalization, replay).
pub const DEPTH_CEILING: usize = 128;
/// `MAX_JSON_DEPTH`'s default: far above the vendor's payloads (the
/// example nests 4 deep), far below what breaks a consumer's parser.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// The deepest nesting of objects and arrays in `body`, counted as far as
/// `stop + 1` (a caller comparing with `stop` needs no more). Brackets
/// inside strings do not count. For bytes that are not JSON the figure
/// means little, but such a body is refused anyway.
pub fn nesting_depth(body: &[u8], stop: usize) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut at = 0;
    while let Some(&byte) = body.get(at) {
        match byte {
            // Most of a visit is string content: jump to the string's end.
            b'"' => match string_end(body, at + 1) {
                Some(end) => at = end,
                None => return deepest,
            },
            b'{' | b'[' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > stop {
                        return deepest;
                    }
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    deepest
}

/// Whether `body` nests objects or arrays deeper than `limit`. Nesting
/// can be no deeper than the number of opening brackets, so a body with at
/// most `limit` of them (inside strings too) is settled by one count the
/// compiler vectorizes, most visits among them (the example has 42); only
/// the rest are walked by [`nesting_depth`].
pub fn nests_deeper_than(body: &[u8], limit: usize) -> bool {
    let openings = body.iter().filter(|&&b| b == b'{' || b == b'[').count();
    openings > limit && nesting_depth(body, limit) > limit
}

/// The index of the quote that closes a string whose content starts at
/// `from`, skipping escaped characters; `None` when it is never closed.
fn string_end(body: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let found = from + memchr::memchr2(b'"', b'\\', body.get(from..)?)?;
        if body[found] == b'"' {
            return Some(found);
        }
        from = found + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_and_arrays_count_alike_and_strings_not_at_all() {
        assert_eq!(nesting_depth(b"1", 10), 0);
        assert_eq!(nesting_depth(br#"{"a":1}"#, 10), 1);
        assert_eq!(nesting_depth(br#"{"a":[{"b":[]}],"c":{}}"#, 10), 4);
        assert_eq!(nesting_depth(br#"{"a":"[[[{{{\"[[["}"#, 10), 1);
        assert_eq!(nesting_depth(br#"{"a":"\\","b":[1]}"#, 10), 2);
        assert_eq!(nesting_depth(br#"{"a":"\"[[","b":[1]}"#, 10), 2);
        assert_eq!(nesting_depth(br#"{"a":"never closed [[["#, 10), 1);
    }

    #[test]
    fn counting_stops_just_past_the_limit() {
        let deep = "[".repeat(100_000);
        assert_eq!(nesting_depth(deep.as_bytes(), 64), 65);
        let objects = r#"{"a":"#.repeat(1_000);
        assert_eq!(nesting_depth(objects.as_bytes(), 2_000), 1_000);
    }

    proptest::proptest! {
        #[test]
        fn the_bracket_count_settles_the_same_bodies_as_the_walk(
            body in proptest::collection::vec(
                proptest::sample::select(b"{}[]\"\\a,:".to_vec()),
                0..160,
            ),
            limit in 0usize..40,
        ) {
            proptest::prop_assert_eq!(
                nests_deeper_than(&body, limit),
                nesting_depth(&body, limit) > limit
            );
        }
    }

    #[test]
    fn the_vendor_example_sits_far_below_the_default() {
        let example = include_bytes!("../../tests/fixtures/finish-visit-example.json");
        let depth = nesting_depth(example, DEPTH_CEILING);
        assert!((1..=8).contains(&depth), "{depth}");
    }
}
