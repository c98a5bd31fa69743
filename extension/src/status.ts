// The status bar item: what the server last said about itself (`redline/status`), and a click that
// pauses or resumes suggestions.

import * as vscode from 'vscode';
import { type State, type StatusPayload } from './protocol';

const ICONS: Record<State, string> = {
    starting: '$(loading~spin)',
    ready: '$(pencil)',
    thinking: '$(sync~spin)',
    paused: '$(debug-pause)',
    error: '$(error)',
};

const CLICK_HINT: Record<State, string> = {
    starting: 'Click to pause suggestions.',
    ready: 'Click to pause suggestions.',
    thinking: 'Click to pause suggestions.',
    paused: 'Click to resume suggestions.',
    error: 'Click to show the output.',
};

export class StatusBar implements vscode.Disposable {
    private readonly item: vscode.StatusBarItem;
    private current: StatusPayload = { state: 'starting', message: 'Starting the server', model: null };

    constructor(
        private readonly toggleCommand: string,
        private readonly showOutputCommand: string,
    ) {
        this.item = vscode.window.createStatusBarItem('redline.status', vscode.StatusBarAlignment.Right, 100);
        this.item.name = 'Redline';
        this.render();
        this.item.show();
    }

    get state(): State {
        return this.current.state;
    }

    show(payload: StatusPayload): void {
        this.current = { state: payload.state, message: payload.message ?? '', model: payload.model ?? null };
        this.render();
    }

    starting(message = 'Starting the server'): void {
        this.show({ state: 'starting', message, model: null });
    }

    error(message: string): void {
        this.show({ state: 'error', message, model: this.current.model });
    }

    dispose(): void {
        this.item.dispose();
    }

    private render(): void {
        const { state, message, model } = this.current;
        this.item.text = `${ICONS[state]} Redline`;
        const lines = [`Redline: ${state}${message ? ` (${message})` : ''}`];
        if (model) {
            lines.push(`Model: ${model}`);
        }
        lines.push(CLICK_HINT[state]);
        this.item.tooltip = lines.join('\n');
        this.item.command = state === 'error' ? this.showOutputCommand : this.toggleCommand;
        this.item.backgroundColor =
            state === 'error' ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
        this.item.accessibilityInformation = { label: `Redline ${state}`, role: 'button' };
    }
}
