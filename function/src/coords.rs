//! Latitude and longitude from path segments: finite numbers in range, or a 400.

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coords {
    pub latitude: f64,
    pub longitude: f64,
}

fn number(name: &str, text: &str, limit: f64) -> Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{name} must be a number, got '{}'", shorten(text)))?;
    if !v.is_finite() {
        return Err(format!("{name} must be a finite number"));
    }
    if !(-limit..=limit).contains(&v) {
        return Err(format!("{name} must be between -{limit} and {limit}"));
    }
    Ok(v)
}

fn shorten(s: &str) -> String {
    s.chars().take(32).collect()
}

impl Coords {
    pub fn parse(latitude: &str, longitude: &str) -> Result<Coords, String> {
        Ok(Coords {
            latitude: number("latitude", latitude, 90.0)?,
            longitude: number("longitude", longitude, 180.0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_coordinates() {
        assert_eq!(
            Coords::parse("52.52", "-13.4"),
            Ok(Coords {
                latitude: 52.52,
                longitude: -13.4
            })
        );
        assert!(Coords::parse("90", "180").is_ok());
        assert!(Coords::parse("-90", "-180").is_ok());
        for (lat, lon) in [
            ("90.01", "0"),
            ("0", "180.5"),
            ("NaN", "0"),
            ("0", "inf"),
            ("-infinity", "0"),
            ("abc", "0"),
            ("", "0"),
            ("1e3", "0"),
            ("0x10", "0"),
        ] {
            assert!(Coords::parse(lat, lon).is_err(), "{lat},{lon}");
        }
    }
}
