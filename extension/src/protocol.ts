// Redline's wire protocol between the VS Code extension and the server.
//
// Mirrors server/protocol.py: change both together. Everything travels over standard LSP: commands
// through `workspace/executeCommand`, custom notifications under the `redline/` prefix, and settings in
// `initializationOptions` and `workspace/didChangeConfiguration` (section `redline`).

// --- Commands the server executes (workspace/executeCommand) ------------------------------------
// The language client registers these as VS Code commands itself (from the server's
// executeCommandProvider), so the extension's own commands use other ids (see CLIENT_COMMANDS).

/** Sent by the editor when the user accepts an inline suggestion. Arguments: [suggestionId: string]. */
export const CMD_ACCEPTED = 'redline.accepted';
/** Pause / resume suggestions and capture. No arguments. Return the new status payload. */
export const CMD_PAUSE = 'redline.pause';
export const CMD_RESUME = 'redline.resume';
/** Returns the status payload without changing anything. */
export const CMD_STATUS = 'redline.status';

export const SERVER_COMMANDS = [CMD_ACCEPTED, CMD_PAUSE, CMD_RESUME, CMD_STATUS] as const;

// --- Notifications the server sends --------------------------------------------------------------

/** Server -> client, payload StatusPayload. */
export const NOTIFY_STATUS = 'redline/status';
export const STATES = ['starting', 'ready', 'thinking', 'paused', 'error'] as const;
export type State = (typeof STATES)[number];

export interface StatusPayload {
    state: State;
    message: string;
    model: string | null;
}

export function isStatusPayload(value: unknown): value is StatusPayload {
    if (typeof value !== 'object' || value === null) {
        return false;
    }
    const v = value as Record<string, unknown>;
    return typeof v.state === 'string' && (STATES as readonly string[]).includes(v.state);
}

// --- Settings (section "redline"; camelCase as in VS Code) ---------------------------------------

export const SETTINGS_SECTION = 'redline';

/** What the server reads from the `redline` section. pythonPath and trace are the client's alone. */
export interface Settings {
    /** Local Hugging Face model folder; empty = the embedded default model. */
    modelPath: string;
    /** Suggestions on/off. */
    enabled: boolean;
    /** Language ids to suggest in; ["*"] = all. */
    languages: string[];
    /** Upper bound on generated tokens per suggestion. */
    maxSuggestionTokens: number;
}

export const DEFAULT_LANGUAGES = [
    'markdown',
    'plaintext',
    'python',
    'javascript',
    'typescript',
    'javascriptreact',
    'typescriptreact',
];

// --- The extension's own commands (contributed in package.json) ----------------------------------

export const CLIENT_COMMANDS = {
    pause: 'redline.client.pause',
    resume: 'redline.client.resume',
    togglePause: 'redline.client.togglePause',
    showOutput: 'redline.client.showOutput',
    restart: 'redline.client.restart',
} as const;
