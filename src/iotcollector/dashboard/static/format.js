// Number and time formatting for people.

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const rate = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
// Two decimals at most (a pressure of 1012.53 hPa is not rounded to 1,013); small values by
// significant digits (0.00412 ppm is not 0).
const value = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const smallValue = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 3 });
const clock = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export const formatInteger = (n) => (n === null || n === undefined ? "–" : integer.format(n));
export const formatRate = (n) => (n === null || n === undefined ? "–" : rate.format(n));
export function formatValue(n) {
  if (n === null || n === undefined) {
    return "–";
  }
  return (n === 0 || Math.abs(n) >= 1 ? value : smallValue).format(n);
}
export const formatClock = (ms) => clock.format(new Date(ms));
export const formatDateTime = (ms) => full.format(new Date(ms));

/** "4 s ago", "12 min ago", "3 h ago", "2 d ago". */
export function formatAgo(thenMs, nowMs) {
  const seconds = Math.max(0, Math.round((nowMs - thenMs) / 1000));
  if (seconds < 60) {
    return `${seconds} s ago`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ago`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 48) {
    return `${hours} h ago`;
  }
  return `${Math.floor(hours / 24)} d ago`;
}

/** "5 minutes" for a range in seconds. */
export function formatSpan(seconds) {
  if (seconds % 3600 === 0) {
    const hours = seconds / 3600;
    return hours === 1 ? "hour" : `${hours} hours`;
  }
  return `${Math.round(seconds / 60)} minutes`;
}
