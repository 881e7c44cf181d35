"""The data loop: does the training set cover what the cameras see, how does the model do on the
frames annotators labelled, how does it do by its own confidences, how fresh is the data."""
