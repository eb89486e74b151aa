//! `generate`'s progress on stderr: a progress bar per image when stderr is a terminal, plain
//! lines otherwise (a log or a pipe gets no control characters, and only about ten lines per
//! image unless `--progress-every` asks for more).
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use darkroom_worker::pipeline::Observer;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::ProgressMode;

/// Told each step by the pipeline; draws or prints the progress of the image at hand.
pub struct Progress {
    images: usize,
    every: usize,
    show: Show,
    /// When the image at hand began: its first step, or the end of the previous image's last.
    image_started: Instant,
}

enum Show {
    Bar(Option<ProgressBar>),
    Lines,
    Nothing,
}

impl Progress {
    /// Progress for `images` images; `every` is `--progress-every` (0: about ten lines an image).
    pub fn new(mode: ProgressMode, every: usize, images: usize) -> Progress {
        let show = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => Show::Bar(None),
            ProgressMode::Auto | ProgressMode::Lines => Show::Lines,
            ProgressMode::None => Show::Nothing,
        };
        Progress { images: images.max(1), every, show, image_started: Instant::now() }
    }

    fn line_every(&self, per_image: usize) -> usize {
        if self.every > 0 {
            self.every
        } else {
            per_image.div_ceil(10).max(1)
        }
    }
}

/// Image `index` (0-based) and step `n` (1-based) within it, of `step` counted over all images.
fn locate(step: usize, total: usize, images: usize) -> (usize, usize, usize) {
    let per_image = (total / images).max(1);
    let index = (step.max(1) - 1) / per_image;
    (index, step - index * per_image, per_image)
}

/// The bar of image `index` of `images`, `steps` long.
fn new_bar(index: usize, images: usize, steps: usize) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} steps ({elapsed}, eta {eta})")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr()).with_style(style);
    bar.set_prefix(format!("image {}/{images}", index + 1));
    bar
}

impl Observer for Progress {
    fn on_step(&mut self, step: usize, total: usize) {
        let (index, n, per_image) = locate(step, total, self.images);
        let images = self.images;
        let every = self.line_every(per_image);
        match &mut self.show {
            Show::Bar(slot) => {
                // The first image's bar appears at its first step (its length is not known
                // before); each next one when the previous ends, so that its time counts its
                // first step.
                let bar = slot.get_or_insert_with(|| new_bar(index, images, per_image));
                bar.set_position(n as u64);
                if n >= per_image {
                    bar.finish();
                    *slot = (index + 1 < images).then(|| new_bar(index + 1, images, per_image));
                }
            }
            Show::Lines => {
                if n % every == 0 || n >= per_image {
                    let per_step = self.image_started.elapsed() / n as u32;
                    let eta = per_step * (per_image - n) as u32;
                    eprintln!("image {}/{images}: step {n}/{per_image}, {:.2} s/step, eta {}", index + 1, per_step.as_secs_f64(), secs(eta));
                }
                if n >= per_image {
                    self.image_started = Instant::now();
                }
            }
            Show::Nothing => {}
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn steps_over_all_images_map_to_each_image() {
        assert_eq!(locate(1, 20, 2), (0, 1, 10));
        assert_eq!(locate(10, 20, 2), (0, 10, 10));
        assert_eq!(locate(11, 20, 2), (1, 1, 10));
        assert_eq!(locate(20, 20, 2), (1, 10, 10));
        assert_eq!(locate(3, 3, 1), (0, 3, 3));
    }
}
