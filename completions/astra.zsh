#compdef astra

_astra_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _ASTRA_COMPLETE=complete_zsh astra)
}

compdef _astra_completion astra
