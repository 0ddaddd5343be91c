/**
 * The CLI's exit codes, apart from cli.ts so that each command module can return them without
 * importing the program that dispatches to it.
 */

/** Exit code: success. */
export const EXIT_OK = 0;
/** Exit code: unexpected error (a bug; rerun with PARTSCAN_DEBUG=1 for the stack). */
export const EXIT_UNEXPECTED = 1;
/** Exit code: usage error or typed PartscanError. */
export const EXIT_USAGE = 2;
/** Exit code: the run was written but some images could not be scored. */
export const EXIT_PARTIAL = 3;
/** Exit code: `score --fail-on-alarm` and the line monitor raised an alarm (the run was written). */
export const EXIT_ALARM = 4;
