//! Packed RGB frames (`raw:WxH:rgb24`) of a size taken from the first two bytes: every whole
//! frame comes out, a short tail is reported corrupt, then the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resnext_edge::stream::sources::raw::RawSource;
use resnext_edge::stream::{Captured, FrameSource};

fuzz_target!(|data: &[u8]| {
    let [w, h, rest @ ..] = data else { return };
    let (width, height) = (*w as u32 % 16 + 1, *h as u32 % 16 + 1);
    let frame = (width * height * 3) as usize;
    let mut source = RawSource::new(
        Box::new(std::io::Cursor::new(rest.to_vec())),
        width,
        height,
        false,
    );
    let (mut frames, mut corrupt) = (0, 0);
    loop {
        match source.next() {
            Captured::Frame { .. } => frames += 1,
            Captured::Corrupt(_) => corrupt += 1,
            Captured::End => break,
            Captured::Failed(why) => panic!("a raw source never fails: {why}"),
        }
    }
    assert_eq!(frames, rest.len() / frame);
    assert_eq!(corrupt, usize::from(rest.len() % frame != 0));
});
