//! Output pins for the stream trigger: `--gpio CHIP:LINE` (a Linux GPIO character device, cargo
//! feature `gpio`) or `--gpio mock` (a dry run: transitions are printed, nothing is touched).

pub mod trigger;

pub use trigger::{Trigger, TriggerSpec};

use embedded_hal::digital::{ErrorKind, ErrorType, OutputPin};

/// A parsed `--gpio`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSpec {
    /// Print the transitions on stderr instead of switching a pin.
    Mock,
    /// A line of a GPIO chip, the chip named by path (`/dev/gpiochip0`), kernel name
    /// (`gpiochip0`) or label (`pinctrl-bcm2711` on a Pi 4, `pinctrl-rp1` on a Pi 5).
    Line { chip: String, line: u32 },
}

impl std::str::FromStr for PinSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "mock" {
            return Ok(PinSpec::Mock);
        }
        match s.rsplit_once(':') {
            Some((chip, line)) if !chip.is_empty() => match line.parse::<u32>() {
                Ok(line) => Ok(PinSpec::Line {
                    chip: chip.to_string(),
                    line,
                }),
                Err(_) => Err(format!("`{s}`: `{line}` is not a line number")),
            },
            _ => Err(format!(
                "`{s}`: expected CHIP:LINE (e.g. gpiochip0:17, pinctrl-rp1:17) or mock"
            )),
        }
    }
}

/// Why a pin could not be switched.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PinError(String);

impl embedded_hal::digital::Error for PinError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// The pin a stream drives.
pub enum BoardPin {
    /// Dry run: transitions printed on stderr.
    Mock,
    #[cfg(feature = "gpio")]
    Line(linux_embedded_hal::CdevPin, String),
}

impl ErrorType for BoardPin {
    type Error = PinError;
}

impl OutputPin for BoardPin {
    fn set_low(&mut self) -> Result<(), PinError> {
        self.set(false)
    }

    fn set_high(&mut self) -> Result<(), PinError> {
        self.set(true)
    }
}

impl BoardPin {
    fn set(&mut self, high: bool) -> Result<(), PinError> {
        let level = if high { "high" } else { "low" };
        match self {
            BoardPin::Mock => {
                eprintln!("gpio mock: pin {level}");
                Ok(())
            }
            #[cfg(feature = "gpio")]
            BoardPin::Line(pin, name) => {
                let r = if high { pin.set_high() } else { pin.set_low() };
                log::info!("gpio {name}: {level}");
                r.map_err(|e| PinError(format!("gpio {name}: cannot set {level}: {e}")))
            }
        }
    }

    /// Opens the pin `spec` names, as an output.
    pub fn open(spec: &PinSpec) -> anyhow::Result<BoardPin> {
        match spec {
            PinSpec::Mock => Ok(BoardPin::Mock),
            #[cfg(feature = "gpio")]
            PinSpec::Line { chip, line } => cdev::open(chip, *line),
            #[cfg(not(feature = "gpio"))]
            PinSpec::Line { chip, line } => anyhow::bail!(
                "--gpio {chip}:{line}: this build has no GPIO support (build with `--features gpio`; the board builds of targets/ have it), or use --gpio mock"
            ),
        }
    }
}

#[cfg(feature = "gpio")]
mod cdev {
    use super::BoardPin;
    use anyhow::Context;
    use linux_embedded_hal::gpio_cdev::{self, Chip, LineRequestFlags};
    use linux_embedded_hal::CdevPin;

    fn find_chip(name: &str) -> anyhow::Result<Chip> {
        if name.starts_with('/') {
            return Chip::new(name).with_context(|| format!("{name}: cannot open GPIO chip"));
        }
        let mut seen = Vec::new();
        for chip in gpio_cdev::chips().context("cannot list GPIO chips in /dev")? {
            let chip = chip.context("cannot open a GPIO chip")?;
            if chip.name() == name || chip.label() == name {
                return Ok(chip);
            }
            seen.push(format!("{} ({})", chip.name(), chip.label()));
        }
        anyhow::bail!(
            "no GPIO chip named or labelled `{name}`; this system has: {}",
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(", ")
            }
        )
    }

    pub fn open(chip_name: &str, line: u32) -> anyhow::Result<BoardPin> {
        let mut chip = find_chip(chip_name)?;
        let lines = chip.num_lines();
        let handle = chip
            .get_line(line)
            .with_context(|| format!("{chip_name}: no line {line} (the chip has {lines})"))?
            .request(LineRequestFlags::OUTPUT, 0, "resnext-edge")
            .with_context(|| {
                format!("{chip_name}:{line}: cannot request the line as an output (in use?)")
            })?;
        let pin = CdevPin::new(handle).with_context(|| format!("{chip_name}:{line}"))?;
        Ok(BoardPin::Line(pin, format!("{chip_name}:{line}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_specs() {
        assert_eq!("mock".parse::<PinSpec>(), Ok(PinSpec::Mock));
        assert_eq!(
            "gpiochip0:17".parse::<PinSpec>(),
            Ok(PinSpec::Line {
                chip: "gpiochip0".into(),
                line: 17
            })
        );
        assert_eq!(
            "/dev/gpiochip4:5".parse::<PinSpec>(),
            Ok(PinSpec::Line {
                chip: "/dev/gpiochip4".into(),
                line: 5
            })
        );
        assert!("gpiochip0".parse::<PinSpec>().is_err());
        assert!("gpiochip0:x".parse::<PinSpec>().is_err());
        assert!(":3".parse::<PinSpec>().is_err());
    }

    #[cfg(feature = "gpio")]
    #[test]
    fn a_chip_that_does_not_exist_is_a_clear_error() {
        let e = BoardPin::open(&PinSpec::Line {
            chip: "no-such-chip".into(),
            line: 1,
        })
        .err()
        .unwrap();
        assert!(format!("{e:#}").contains("no-such-chip"), "{e:#}");
    }
}
