//! US Eastern local time to UTC, for LOBSTER files (which count seconds after local midnight).

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The number of days of a month (1 to 12) of the proleptic Gregorian calendar.
pub(crate) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The day of month of the `n`th Sunday (1-based) of a month.
fn nth_sunday(y: i64, m: u32, n: u32) -> u32 {
    // 1970-01-01 was a Thursday (weekday 4 with Sunday = 0).
    let weekday_first = (days_from_civil(y, m, 1) + 4).rem_euclid(7) as u32;
    1 + (7 - weekday_first) % 7 + 7 * (n - 1)
}

/// UTC offset in hours of US Eastern time at local noon of the date: -4 under daylight saving
/// (second Sunday of March to first Sunday of November, the rule since 2007), else -5.
pub(crate) fn eastern_offset_hours(y: i64, m: u32, d: u32) -> i64 {
    let dst = match m {
        4..=10 => true,
        3 => d >= nth_sunday(y, 3, 2),
        11 => d < nth_sunday(y, 11, 1),
        _ => false,
    };
    if dst { -4 } else { -5 }
}

/// Nanoseconds since the epoch of local midnight US Eastern on the date.
pub(crate) fn eastern_midnight_ns(y: i64, m: u32, d: u32) -> i64 {
    let utc_midnight_s = days_from_civil(y, m, d) * 86_400;
    (utc_midnight_s - eastern_offset_hours(y, m, d) * 3600) * 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lobster_sample_day_is_edt() {
        // 2012-06-21 09:30 EDT = 13:30 UTC = 1340285400 s.
        assert_eq!(
            eastern_midnight_ns(2012, 6, 21) + 34_200 * 1_000_000_000,
            1_340_285_400 * 1_000_000_000
        );
        assert_eq!(eastern_offset_hours(2012, 1, 3), -5);
        assert_eq!(nth_sunday(2012, 3, 2), 11);
        assert_eq!(nth_sunday(2012, 11, 1), 4);
    }

    #[test]
    fn month_lengths_know_leap_years() {
        assert_eq!(days_in_month(2012, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2023, 2), 28);
        assert_eq!(days_in_month(2012, 6), 30);
        assert_eq!(days_in_month(2012, 12), 31);
    }
}
