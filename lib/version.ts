/** The sipkit version, also sent in User-Agent headers. */
export const VERSION = "0.1.0";
