//! Stop strings over streamed text. Text that could still be the start of a stop string
//! is held back, so the stop string itself never reaches the reader, even when it
//! arrives split across several tokens.

pub struct StopStrings {
    stops: Vec<String>,
    /// Text received but not yet released.
    held: String,
}

/// What a chunk of text released, and whether it completed a stop string.
#[derive(Debug, PartialEq, Eq)]
pub struct Released {
    pub text: String,
    pub stopped: bool,
}

impl StopStrings {
    /// Empty strings are ignored.
    pub fn new(stops: &[String]) -> StopStrings {
        StopStrings {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Adds `text`; releases what can no longer be part of a stop string, or everything
    /// before the first stop string once one is complete.
    pub fn push(&mut self, text: &str) -> Released {
        self.held.push_str(text);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            self.held.truncate(at);
            return Released {
                text: std::mem::take(&mut self.held),
                stopped: true,
            };
        }
        let keep = self.longest_partial_stop();
        let text = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        Released {
            text,
            stopped: false,
        }
    }

    /// The text still held back: at the end of a generation it was not a stop string.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Bytes at the end of `held` that begin some stop string.
    fn longest_partial_stop(&self) -> usize {
        let held = &self.held;
        (1..=held.len())
            .rev()
            .filter(|&n| held.is_char_boundary(held.len() - n))
            .find(|&n| {
                let tail = &held[held.len() - n..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(list: &[&str]) -> StopStrings {
        StopStrings::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn released(text: &str, stopped: bool) -> Released {
        Released {
            text: text.into(),
            stopped,
        }
    }

    #[test]
    fn releases_text_that_cannot_start_a_stop() {
        let mut s = stops(&["STOP"]);
        assert_eq!(s.push("hello "), released("hello ", false));
        assert_eq!(s.push("wor"), released("wor", false));
    }

    #[test]
    fn holds_a_split_stop_string_back_and_drops_it() {
        let mut s = stops(&["\nUser:"]);
        assert_eq!(s.push("Sure.\nUs"), released("Sure.", false));
        assert_eq!(s.push("er: more"), released("", true));
    }

    #[test]
    fn a_false_start_is_released_later() {
        let mut s = stops(&["END"]);
        assert_eq!(s.push("the EN"), released("the ", false));
        assert_eq!(s.push("D"), released("", true));
        let mut s = stops(&["END"]);
        assert_eq!(s.push("EN"), released("", false));
        assert_eq!(s.push("ough"), released("ENough", false));
        assert_eq!(s.push("E"), released("", false));
        assert_eq!(s.finish(), "E");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut s = stops(&["bb", "a"]);
        assert_eq!(s.push("xxbbyya"), released("xx", true));
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let mut s = stops(&["é!"]);
        assert_eq!(s.push("café"), released("caf", false));
        assert_eq!(s.push("?"), released("é?", false));
    }

    #[test]
    fn no_stops_releases_everything() {
        let mut s = stops(&[""]);
        assert_eq!(s.push("abc"), released("abc", false));
        assert_eq!(s.finish(), "");
    }
}
