// Starting and stopping the language client that runs `<python> -m server serve` over stdio.

import * as vscode from 'vscode';
import {
    CloseAction,
    ExecuteCommandRequest,
    LanguageClient,
    State as ClientState,
    WorkDoneProgress,
    WorkDoneProgressCreateRequest,
    type WorkDoneProgressBegin,
    type WorkDoneProgressEnd,
    type WorkDoneProgressReport,
    type DocumentSelector,
    type ErrorHandler,
    type LanguageClientOptions,
    type ServerOptions,
} from 'vscode-languageclient/node';
import {
    CMD_STATUS,
    DEFAULT_LANGUAGES,
    NOTIFY_STATUS,
    SETTINGS_SECTION,
    isStatusPayload,
    type Settings,
    type StatusPayload,
} from './protocol';
import { resolvePython } from './python';
import { type StatusBar } from './status';

/** What initializationOptions carries; didChangeConfiguration then sends the whole `redline` section. */
export function readSettings(): Settings {
    const config = vscode.workspace.getConfiguration(SETTINGS_SECTION);
    return {
        modelPath: config.get<string>('modelPath', ''),
        enabled: config.get<boolean>('enabled', true),
        languages: config.get<string[]>('languages', DEFAULT_LANGUAGES),
        maxSuggestionTokens: config.get<number>('maxSuggestionTokens', 48),
        capture: config.get<boolean>('capture', true),
        settleSeconds: config.get<number>('settleSeconds', 20),
        exclude: config.get<string[]>('exclude', []),
        retentionDays: config.get<number>('retentionDays', 365),
        autoRetrainEdits: config.get<number>('autoRetrainEdits', 50),
        autoRetrainIdleSeconds: config.get<number>('autoRetrainIdleSeconds', 120),
    };
}

export type WorkDoneValue = WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd;

export function documentSelector(languages: string[]): DocumentSelector {
    const schemes = ['file', 'untitled'];
    if (languages.includes('*')) {
        return schemes.map((scheme) => ({ scheme }));
    }
    return languages.flatMap((language) => schemes.map((scheme) => ({ scheme, language })));
}

/** One server process at a time; `restart` replaces it (settings that shape the process may change). */
export class ServerSession implements vscode.Disposable {
    private client: LanguageClient | undefined;
    private stopping = false;
    private readonly listeners: vscode.Disposable[] = [];
    /** Starts, stops and restarts run one after another (a settings change may come mid-start). */
    private queue: Promise<void> = Promise.resolve();

    /** Where the server's own work-done progress (a retraining) goes; see training.ts. */
    onWorkDone: ((value: WorkDoneValue) => void) | undefined;

    constructor(
        private readonly extensionPath: string,
        private readonly output: vscode.LogOutputChannel,
        private readonly status: StatusBar,
    ) {}

    get running(): boolean {
        return this.client?.state === ClientState.Running;
    }

    start(): Promise<void> {
        return this.enqueue(() => this.doStart());
    }

    stop(): Promise<void> {
        return this.enqueue(() => this.doStop());
    }

    restart(): Promise<void> {
        return this.enqueue(async () => {
            this.output.info('Restarting the server');
            await this.doStop();
            await this.doStart();
        });
    }

    private enqueue(step: () => Promise<void>): Promise<void> {
        const next = this.queue.then(step, step);
        this.queue = next.catch(() => undefined);
        return next;
    }

    private async doStart(): Promise<void> {
        const settings = readSettings();
        const python = resolvePython(
            vscode.workspace.getConfiguration(SETTINGS_SECTION).get<string>('pythonPath'),
            process.env,
            this.extensionPath,
        );
        this.output.info(`Starting the server: ${python.command} -m server serve (python from ${python.source})`);
        this.status.starting();

        const serverOptions: ServerOptions = {
            command: python.command,
            // No `transport`: with TransportKind.stdio the client would append `--stdio` to the
            // arguments, which the server's command line refuses. Without it, stdio is used as is.
            args: ['-m', 'server', 'serve'],
            // `python -m` puts its working folder first on sys.path; the extension's own folder has no
            // `server` package to shadow ours (a workspace might). The environment, REDLINE_HOME
            // included, is inherited unchanged.
            options: { cwd: this.extensionPath, env: process.env },
        };
        // A server that never came up (a wrong interpreter, a missing package) is not restarted:
        // doStart reports it once. One that ran and then died gets the client's usual restarts.
        let ran = false;
        let usual: ErrorHandler | undefined;
        const errorHandler: ErrorHandler = {
            error: (error, msg, count) => usual!.error(error, msg, count),
            closed: () => (ran ? usual!.closed() : { action: CloseAction.DoNotRestart, handled: true }),
        };
        const clientOptions: LanguageClientOptions = {
            documentSelector: documentSelector(settings.languages),
            initializationOptions: settings,
            synchronize: { configurationSection: SETTINGS_SECTION },
            outputChannel: this.output,
            // LSP traffic goes to the same channel at its `trace` log level: set the Redline output's
            // log level to Trace to see it; redline.trace.server chooses messages or verbose.
            traceOutputChannel: this.output,
            errorHandler,
        };
        const client = new LanguageClient('redline', 'Redline', serverOptions, clientOptions);
        usual = client.createDefaultErrorHandler();
        this.client = client;
        this.listeners.push(
            client.onNotification(NOTIFY_STATUS, (payload: unknown) => {
                if (isStatusPayload(payload)) {
                    this.status.show(payload);
                }
            }),
            client.onDidChangeState((event) => {
                if (event.newState === ClientState.Running) {
                    ran = true;
                }
                if (event.newState === ClientState.Stopped && ran && !this.stopping && this.client === client) {
                    this.status.error('The server stopped');
                }
            }),
        );
        try {
            await client.start();
        } catch (err) {
            this.fail(
                `Redline could not start its server with ${python.command} (${python.source}): ` +
                    `${message(err)}. Set redline.pythonPath to the Python that has Redline installed.`,
            );
            return;
        }
        this.followServerProgress(client);
        // The server may have announced its state before our handler saw it: ask once.
        const now = await this.execute(CMD_STATUS).catch(() => undefined);
        if (now) {
            this.status.show(now);
        }
    }

    /**
     * Take over server-created work-done progress (window/workDoneProgress/create). The language
     * client's own handler shows it only as a status-bar spinner without a Cancel button; ours hands it
     * to onWorkDone, which shows a cancellable notification. Registered after start, so it replaces the
     * client's handler for this connection.
     */
    private followServerProgress(client: LanguageClient): void {
        const tokens = new Map<string | number, vscode.Disposable>();
        this.listeners.push(
            client.onRequest(WorkDoneProgressCreateRequest.type, (params) => {
                const token = params.token;
                tokens.get(token)?.dispose();
                const listener = client.onProgress(WorkDoneProgress.type, token, (value) => {
                    if (value.kind === 'end') {
                        tokens.get(token)?.dispose();
                        tokens.delete(token);
                    }
                    try {
                        this.onWorkDone?.(value);
                    } catch (err) {
                        this.output.warn(`Showing the server's progress: ${message(err)}`);
                    }
                });
                tokens.set(token, listener);
            }),
            {
                dispose: () => {
                    tokens.forEach((d) => d.dispose());
                    tokens.clear();
                },
            },
        );
    }

    private async doStop(): Promise<void> {
        const client = this.client;
        this.client = undefined;
        this.listeners.splice(0).forEach((d) => d.dispose());
        if (!client) {
            return;
        }
        this.stopping = true;
        try {
            if (client.state !== ClientState.Stopped) {
                await client.stop();
            }
        } catch (err) {
            this.output.warn(`Stopping the server: ${message(err)}`);
        } finally {
            this.stopping = false;
        }
    }

    /** Run one of the server's commands; returns its status payload when it answers with one. */
    async execute(command: string, args: unknown[] = []): Promise<StatusPayload | undefined> {
        const result = await this.command(command, args);
        return isStatusPayload(result) ? result : undefined;
    }

    /** Run one of the server's commands; returns what it answers. */
    async command(command: string, args: unknown[] = []): Promise<unknown> {
        if (!this.client || !this.running) {
            throw new Error('the Redline server is not running');
        }
        return this.client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
    }

    dispose(): void {
        void this.stop();
    }

    private fail(text: string): void {
        this.output.error(text);
        this.status.error(text);
        void vscode.window.showErrorMessage(text, 'Show output').then((choice) => {
            if (choice) {
                this.output.show(true);
            }
        });
    }
}

export function message(err: unknown): string {
    return err instanceof Error ? err.message : String(err);
}
