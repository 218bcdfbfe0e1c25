// (being written) connector ops.
export {};
