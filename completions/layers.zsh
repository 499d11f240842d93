#compdef layers

_layers_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _LAYERS_COMPLETE=complete_zsh layers)
}

compdef _layers_completion layers
